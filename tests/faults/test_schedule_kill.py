"""Schedules under faults: two `cerebelum worker` processes and a `cerebelum serve`
fire one every-second schedule; one worker is killed with SIGKILL mid-run. Each
tick still starts exactly one execution, no tick between the first and the last
is lost (catchup `all`), and every execution completes once. And: with every
worker down for a while, catch-up does what the schedule says when they return."""

from __future__ import annotations

import itertools
import os
import signal
import subprocess
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta

from tests.e2e.test_serve import free_port
from tests.faults.cluster import CLI, Cluster, wait_until
from tests.helpers import definition, fn, wait_until_healthy

from cerebelum.application.schedules import create_schedule


def test_a_killed_worker_changes_nothing_about_the_ticks(cluster: Cluster) -> None:
    engine = cluster.engine
    engine.create_workflow(definition("ticking", {"a": fn("step")}))
    ports = engine.host.schedule_ports()
    create_schedule({"name": "every-second", "workflow": "ticking", "every_s": 1, "overlap": "allow", "catchup": "all"}, ports)

    def scheduled() -> list:  # type: ignore[type-arg]
        return [e for e in engine.executions(limit=10_000) if e.schedule_name == "every-second"]

    first, second = cluster.spawn(concurrency=4), cluster.spawn(concurrency=4)
    with served(cluster):
        wait_until(lambda: len(scheduled()) >= 3, 30, "three ticks")
        cluster.kill(first)
        before = len(scheduled())
        wait_until(lambda: len(scheduled()) >= before + 3, 30, "three more ticks after the kill")
        assert cluster.stop(second) == 0, cluster.logs()
    runs = scheduled()
    late = cluster.spawn(concurrency=4)  # takes over what the killed worker held (its leases lapse)
    rows = cluster.wait_terminal([e.id for e in runs], timeout=60)
    assert cluster.stop(late) == 0, cluster.logs()
    ticks = sorted(e.schedule_tick for e in rows)
    assert Counter(e.key for e in rows).most_common(1)[0][1] == 1
    assert ticks == [ticks[0] + timedelta(seconds=i) for i in range(len(ticks))], ticks  # none lost, none doubled
    for row in rows:
        assert row.status == "completed", row
        cluster.check_completed_once(row)


@contextmanager
def served(cluster: Cluster) -> Iterator[None]:
    """`cerebelum serve` (with its worker pool, which fires schedules too) on the cluster's database."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("CEREBELUM_")}
    command = [str(CLI), "serve", "--port", str(port), "--db", cluster.url, "--handlers", str(cluster.handlers), "--workers", "2"]
    process = subprocess.Popen(command, cwd=cluster.tmp, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        wait_until_healthy(f"http://127.0.0.1:{port}", process)
        yield
    finally:
        process.send_signal(signal.SIGTERM)
        _, err = process.communicate(timeout=30)
        assert process.returncode == 0, err.decode()[-2000:]


def test_catchup_latest_after_every_worker_was_down(cluster: Cluster) -> None:
    engine = cluster.engine
    engine.create_workflow(definition("nightly", {"a": fn("step")}))
    create_schedule(
        {"name": "often", "workflow": "nightly", "every_s": 1, "overlap": "allow", "catchup": "latest"},
        engine.host.schedule_ports(),
    )

    def scheduled() -> list:  # type: ignore[type-arg]
        return sorted((e for e in engine.executions(limit=10_000) if e.schedule_name == "often"), key=lambda e: e.schedule_tick)

    worker = cluster.spawn(concurrency=2)
    wait_until(lambda: len(scheduled()) >= 2, 30, "two ticks")
    assert cluster.stop(worker) == 0, cluster.logs()
    stopped = len(scheduled())
    time.sleep(4)  # three or four ticks fall due while nobody runs
    assert len(scheduled()) == stopped
    cluster.spawn(concurrency=2)
    wait_until(lambda: len(scheduled()) >= stopped + 2, 30, "the catch-up and the next tick")
    ticks = [e.schedule_tick for e in scheduled()]
    gaps = [(b - a).total_seconds() for a, b in itertools.pairwise(ticks)]
    assert max(gaps) >= 3, gaps  # the missed ticks but the latest were not started (catchup latest)
    assert len(set(ticks)) == len(ticks)
