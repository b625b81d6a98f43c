"""Queue limits (spec section 9) held by real `cerebelum worker` processes racing
on one database: the counts come from the event logs' timestamps, never from
the workers' own counters."""

from __future__ import annotations

import os
import signal
from collections import Counter, defaultdict
from datetime import datetime

from tests.faults.cluster import Cluster, wait_until
from tests.helpers import definition, fn, of_type

from cerebelum.application.queues import set_queue


def _ms(moment: datetime) -> datetime:
    return moment.replace(microsecond=moment.microsecond // 1000 * 1000)  # execution_started is to the millisecond


def spans(cluster: Cluster, ids: list[str]) -> dict[str, tuple[datetime, datetime]]:
    """Each execution's (execution_started, terminal event) timestamps, from its log."""
    found = {}
    for execution_id in ids:
        log = cluster.engine.events(execution_id)
        found[execution_id] = (_ms(of_type(log, "execution_started")[0].timestamp), _ms(log[-1].timestamp))
    return found


def most_at_once(intervals: list[tuple[datetime, datetime]]) -> int:
    marks = sorted([(start, 1) for start, _ in intervals] + [(end, -1) for _, end in intervals])
    most = now = 0
    for _, step in marks:  # at a tie an end (-1) sorts before a start (+1)
        now += step
        most = max(most, now)
    return most


def test_two_workers_of_8_never_run_more_than_the_queue_allows(cluster: Cluster) -> None:
    engine = cluster.engine
    engine.create_workflow(definition("limited", {"work": fn("step")}))
    set_queue(engine.store, "partner", concurrency=2)
    cluster.spawn(concurrency=8)
    cluster.spawn(concurrency=8)  # both polling before the work arrives: they race for it
    ids = [engine.execute("limited", {"sleep": 0.3}, queue="partner").id for _ in range(10)]
    done = cluster.wait_terminal(ids, timeout=90)
    assert {e.status for e in done} == {"completed"}
    assert most_at_once(list(spans(cluster, ids).values())) == 2
    print(f"executions run per worker: {Counter(r['pid'] for r in cluster.records())}")


def test_slots_of_a_killed_worker_come_back_when_its_leases_lapse(cluster: Cluster) -> None:
    engine = cluster.engine
    engine.create_workflow(definition("hangs", {"work": fn("hang_once")}))
    set_queue(engine.store, "partner", concurrency=2)
    # The first two (priority 1) hang in the worker that is killed; the others hang briefly, once.
    held = sorted(engine.execute("hangs", {"hang": 60}, queue="partner", priority=1).id for _ in range(2))
    rest = [engine.execute("hangs", {"hang": 0.2}, queue="partner").id for _ in range(3)]
    first = cluster.spawn(concurrency=8)
    wait_until(lambda: len(list(cluster.markers.glob("exec-*"))) == 2, 30, "two executions to hang")
    assert sorted(m.name.split("_")[0] for m in cluster.markers.glob("exec-*")) == held  # the limit: those two only
    os.kill(first.pid, signal.SIGKILL)
    first.wait(timeout=10)
    assert all(engine.status(i).first_claimed_at is None for i in rest)  # the dead worker's leases still hold the slots
    second = cluster.spawn(concurrency=8)
    done = cluster.wait_terminal(held + rest, timeout=120)
    assert {e.status for e in done} == {"completed"}
    assert most_at_once(list(spans(cluster, held + rest).values())) == 2
    for execution_id in held:  # the interrupted node ran again, in the next worker; nothing else ran twice
        assert [r["pid"] for r in cluster.runs(execution_id)["work"]] == [first.pid, second.pid]
    for execution_id in rest:
        assert [r["pid"] for r in cluster.runs(execution_id)["work"]] == [second.pid]
    for execution in done:
        cluster.check_completed_once(execution)


def test_per_key_concurrency_with_many_keys(cluster: Cluster) -> None:
    """1,000 executions over 100 keys, `per_key_concurrency 1`: no key ever has two running, all complete."""
    engine = cluster.engine
    engine.create_workflow(definition("tenant", {"work": fn("step")}))
    set_queue(engine.store, "tenants", per_key_concurrency=1)
    count = 1000
    keys = {}
    for i in range(count):  # each runs 10 ms or more: its span in the log is never empty at millisecond resolution
        keys[engine.execute("tenant", {"sleep": 0.01}, queue="tenants", concurrency_key=f"k{i % 100}").id] = f"k{i % 100}"
    cluster.spawn(concurrency=16)
    cluster.spawn(concurrency=16)
    done = cluster.wait_terminal(list(keys), timeout=300)
    assert {e.status for e in done} == {"completed"}
    found = spans(cluster, list(keys))
    by_key: dict[str, list[tuple[datetime, datetime]]] = defaultdict(list)
    for execution_id, interval in found.items():
        by_key[keys[execution_id]].append(interval)
    assert max(most_at_once(intervals) for intervals in by_key.values()) == 1
    assert most_at_once(list(found.values())) > 1  # different keys did run side by side
