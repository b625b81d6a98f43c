"""Three worker processes share 500 executions on PostgreSQL (claims with
`FOR UPDATE SKIP LOCKED`): every execution completes exactly once, every node
is completed exactly once, and no event log has a gap or a duplicate."""

from __future__ import annotations

import time
from collections import Counter

import psycopg
import pytest
from tests.faults.cluster import Cluster
from tests.helpers import chain, definition, fn, of_type

EXECUTIONS = 500


@pytest.mark.timeout(300)
def test_three_workers_500_executions_on_postgresql(pg_cluster: Cluster) -> None:
    engine = pg_cluster.engine
    engine.create_workflow(definition("many", {"a": fn("step"), "b": fn("step"), "c": fn("step")}, chain("a", "b", "c")))
    workers = [pg_cluster.spawn(concurrency=16, wait_ready=False) for _ in range(3)]
    began = time.monotonic()
    ids = [engine.execute("many", {"n": n}).id for n in range(EXECUTIONS)]
    enqueued = time.monotonic() - began
    for worker in workers:
        pg_cluster.wait_ready(worker)
    rows = pg_cluster.wait_terminal(ids, timeout=150)
    elapsed = time.monotonic() - began
    print(f"{EXECUTIONS} executions: enqueued in {enqueued:.1f}s, all completed {elapsed:.1f}s after the first")

    assert Counter(r.status for r in rows) == {"completed": EXECUTIONS}
    # one look at the whole table: no duplicate sequence, no gap, one terminal event each
    with psycopg.connect(pg_cluster.url) as conn:
        per_execution = conn.execute(
            "SELECT execution_id, count(*), count(DISTINCT sequence), min(sequence), max(sequence),"
            " count(*) FILTER (WHERE type = 'execution_completed'), count(*) FILTER (WHERE type = 'node_completed')"
            " FROM events GROUP BY execution_id"
        ).fetchall()
    assert len(per_execution) == EXECUTIONS
    for execution_id, total, distinct, low, high, finished, nodes in per_execution:
        assert (total, distinct, low, high, finished, nodes) == (total, total, 0, total - 1, 1, 3), execution_id
    for row in rows:
        log = pg_cluster.check_completed_once(row)
        assert [e.node_id for e in of_type(log, "node_completed")] == ["a", "b", "c"]

    records = pg_cluster.records()
    runs = Counter((r["execution"], r["node"]) for r in records)
    assert len(runs) == 3 * EXECUTIONS
    again = sorted(k for k, n in runs.items() if n > 1)
    # No fault here: a lease is never lost, so no handler runs twice (a LeaseKeeper race once re-ran ~2%).
    assert not again, f"{len(again)} node runs ran more than once, e.g. {again[:5]}\n{pg_cluster.logs()}"
    assert {r["key"] for r in records} == {f"{ex}/{node}/1" for ex, node in runs}
    by_pid = Counter(r["pid"] for r in records)
    print(f"handler runs per worker pid: {dict(by_pid)}")
    assert set(by_pid) <= {w.pid for w in workers}
    assert all(w.poll() is None for w in workers)
