"""Child executions against real worker processes killed with SIGKILL (interaction
spec section 4): a child is started once per node run whatever the crashes, the
parent completes, and no node of either completes twice."""

from __future__ import annotations

import time

from tests.faults.cluster import Cluster, wait_until
from tests.helpers import chain, definition, fn

from cerebelum.domain.execution import child_execution_id


def test_a_worker_killed_while_the_child_runs(cluster: Cluster) -> None:
    engine = cluster.engine
    engine.create_workflow(definition("hanging", {"h": fn("hang_once")}))
    doc = definition("holder", {"a": fn("step"), "kid": {"type": "workflow", "config": {"workflow": "hanging"}}, "b": fn("step")})
    doc["edges"] = chain("a", "kid", "b")
    engine.create_workflow(doc)
    execution = engine.execute("holder", {"hang": 30})
    worker = cluster.spawn(concurrency=4)
    wait_until(lambda: list(cluster.markers.iterdir()), 20, "the child's handler to hang")
    cluster.kill(worker)
    cluster.spawn(concurrency=4)
    [done] = cluster.wait_terminal([execution.id], timeout=40)
    assert done.status == "completed", done.error
    [child] = engine.executions(parent=execution.id)
    assert child.id == child_execution_id(execution.id, "kid", 1) and child.status == "completed"
    cluster.check_completed_once(done)
    cluster.check_completed_once(child)


def test_workers_killed_at_random_moments_start_each_child_once(cluster: Cluster) -> None:
    engine = cluster.engine
    engine.create_workflow(definition("leaf", {"s": fn("step")}))
    leaf = {"type": "workflow", "config": {"workflow": "leaf", "input": "{'sleep': 0.05}"}}
    fan = {"type": "map", "config": {"items": "input.items", "max_concurrency": 4, "node": leaf}}
    engine.create_workflow(definition("fan", {"fan": fan, "end": fn("step")}, chain("fan", "end")))
    execution = engine.execute("fan", {"items": list(range(12))})
    worker = cluster.spawn(concurrency=4)
    for _ in range(4):
        time.sleep(0.4)
        cluster.kill(worker)
        worker = cluster.spawn(concurrency=4)
    [done] = cluster.wait_terminal([execution.id], timeout=60)
    assert done.status == "completed", done.error
    children = engine.executions(parent=execution.id, limit=100)
    assert sorted(c.parent_node or "" for c in children) == sorted(f"fan[{i}]" for i in range(12))
    assert all(c.status == "completed" for c in children)
    cluster.check_completed_once(done)
    for child in children:
        cluster.check_completed_once(child)
