"""A short soak: two `cerebelum worker` processes on PostgreSQL (lease TTL
2 s) run one poison execution among 200 normal ones. The issue saw the
poison freeze every worker that claimed it and innocent executions lose
their leases about 20 times in 75 s. Now the poison fails once, with
expression_limit, every normal execution completes with exactly one
node_completed per node, and no worker reports a lost lease."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import empty_pg
from tests.faults.cluster import Cluster
from tests.helpers import definition, fn, of_type

POISON = "size(input.xs.map(a, input.xs.map(b, input.xs.map(c, a + b + c)))) > 0"


@pytest.mark.timeout(120)
def test_one_poison_among_two_hundred_on_two_workers(pg_url: str, tmp_path: Path) -> None:
    empty_pg(pg_url)
    cluster = Cluster(pg_url, tmp_path)
    try:
        flow = definition(
            "soak",
            {"a": fn("step"), "b": fn("step"), "c": fn("step")},
            [{"from": "a", "to": "b", "when": POISON}, {"from": "a", "to": "c"}],
        )
        cluster.engine.create_workflow(flow)
        workers = [cluster.spawn(concurrency=8) for _ in range(2)]
        normal = [cluster.engine.execute("soak", {"xs": [i % 7]}).id for i in range(100)]
        poison = cluster.engine.execute("soak", {"xs": list(range(1000))}).id
        normal += [cluster.engine.execute("soak", {"xs": [i % 7]}).id for i in range(100, 200)]
        rows = cluster.wait_terminal([*normal, poison], timeout=90)
        by_id = {row.id: row for row in rows}

        bad = by_id[poison]
        assert bad.status == "failed" and bad.error["kind"] == "expression_limit", bad.error
        assert bad.error["location"] == "edges[0].when" and bad.error["expression"] == POISON
        log = cluster.check_completed_once(bad)
        assert len(of_type(log, "execution_failed")) == 1

        for execution_id in normal:
            row = by_id[execution_id]
            assert row.status == "completed", (execution_id, row.error)
            log = cluster.check_completed_once(row)
            assert [e.node_id for e in of_type(log, "node_completed")] == ["a", "b"]
        runs = [r for r in cluster.records() if r["execution"] in set(normal)]
        assert len(runs) == 2 * len(normal)  # every handler ran once: no lease was lost, nothing re-ran

        assert all(proc.poll() is None for proc in workers), cluster.logs()
        assert "lost" not in cluster.logs(), cluster.logs()
    finally:
        cluster.close()
