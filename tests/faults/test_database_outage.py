"""PostgreSQL stopped and started in the middle of a run: the workers ride out
the outage (appends retried with backoff, supervised loops restarted) and
finish every execution without losing or duplicating an event.

This stops the machine's real PostgreSQL cluster, which other tests use too:
the outage is kept to a few seconds, and the server is always started again
(in a `finally`) and waited for before anything else happens.
"""

from __future__ import annotations

import subprocess
import time
from collections import Counter
from pathlib import Path

import pytest
from tests.faults.cluster import Cluster, wait_until
from tests.helpers import chain, definition, fn, of_type

OUTAGE_S = 3.0
STEPS = [f"s{i}" for i in range(5)]


def _cluster_version() -> str:
    versions = sorted(p.name for p in Path("/etc/postgresql").iterdir())
    assert versions, "no PostgreSQL cluster under /etc/postgresql"
    return versions[-1]


def pg_ctl(action: str, *extra: str) -> None:
    cmd = ["pg_ctlcluster", "--skip-systemctl-redirect", _cluster_version(), "main", action, *extra]
    subprocess.run(cmd, check=True, capture_output=True, timeout=60)


def pg_ready() -> bool:
    return subprocess.run(["pg_isready", "-h", "127.0.0.1", "-q"], timeout=15, check=False).returncode == 0


def ensure_started() -> None:
    if not pg_ready():
        subprocess.run(
            ["pg_ctlcluster", "--skip-systemctl-redirect", _cluster_version(), "main", "start"],
            capture_output=True,
            timeout=60,
            check=False,
        )
    wait_until(pg_ready, 60, "PostgreSQL to accept connections again", every=0.2)


@pytest.mark.timeout(240)
def test_workers_ride_out_a_postgresql_restart(pg_cluster: Cluster) -> None:
    assert pg_ready()
    engine = pg_cluster.engine
    engine.create_workflow(definition("outage", {s: fn("step") for s in STEPS}, chain(*STEPS)))
    workers = [pg_cluster.spawn(concurrency=8, wait_ready=False) for _ in range(2)]
    for worker in workers:
        pg_cluster.wait_ready(worker)
    ids = [engine.execute("outage", {"sleep": 0.25}).id for _ in range(30)]

    def progressing() -> bool:
        counts = engine.store.queue.counts()
        return counts["completed"] >= 3 and counts["running"] >= 4

    wait_until(progressing, 60, "some executions to complete while others run")
    before = engine.store.queue.counts()
    try:
        pg_ctl("stop", "-m", "fast")
        stopped = time.monotonic()
        assert not pg_ready()
        time.sleep(OUTAGE_S)
    finally:
        ensure_started()
    restarted = time.monotonic()
    print(f"PostgreSQL down for {restarted - stopped:.1f}s with {before['running']} running, {before['completed']} completed")
    assert all(w.poll() is None for w in workers), pg_cluster.logs()  # nobody died of it

    rows = pg_cluster.wait_terminal(ids, timeout=120)
    print(f"all {len(ids)} ended {time.monotonic() - restarted:.1f}s after the restart")
    assert Counter(r.status for r in rows) == {"completed": len(ids)}, [r.error for r in rows if r.status != "completed"][:3]
    reruns = 0
    for row in rows:
        log = pg_cluster.check_completed_once(row)
        assert [e.node_id for e in of_type(log, "node_completed")] == STEPS
        runs = pg_cluster.runs(row.id)
        assert set(runs) == set(STEPS)
        for node, invocations in runs.items():
            assert {r["key"] for r in invocations} == {f"{row.id}/{node}/1"}
        reruns += sum(len(v) - 1 for v in runs.values())
    print(f"handlers run again after the outage: {reruns}")
    assert all(w.poll() is None for w in workers)
