"""A durable timer that falls due while no worker runs fires after a restart
(spec section 4, `delay`): the execution was parked, holding no lease."""

from __future__ import annotations

import time
from datetime import UTC, datetime

from tests.faults.cluster import Cluster, wait_until
from tests.helpers import chain, definition, fn, of_type

from cerebelum.domain.events import parse_rfc3339


def test_timer_due_while_every_worker_is_down_fires_after_restart(cluster: Cluster) -> None:
    engine = cluster.engine
    doc = definition("later", {"a": fn("step"), "wait": {"type": "delay", "config": {"seconds": 3}}, "b": fn("step")})
    doc["edges"] = chain("a", "wait", "b")
    engine.create_workflow(doc)
    execution = engine.execute("later", {})
    worker = cluster.spawn(concurrency=2)

    def parked() -> bool:
        log = engine.events(execution.id)
        counts = engine.store.queue.counts()
        return bool(of_type(log, "timer_started")) and counts["parked"] == 1 and counts["leased"] == 0

    wait_until(parked, 15, "the timer to start and the execution to be parked")
    [started] = of_type(engine.events(execution.id), "timer_started")
    fires_at = parse_rfc3339(started.payload["fires_at"])
    assert cluster.stop(worker) == 0  # graceful
    assert "stopped" in cluster.log(worker)
    assert engine.status(execution.id).status == "running"
    assert not of_type(engine.events(execution.id), "timer_fired")

    # nobody runs while the timer falls due
    time.sleep(max(0.0, (fires_at - datetime.now(UTC)).total_seconds()) + 1.0)
    assert not of_type(engine.events(execution.id), "timer_fired")
    restarted = time.monotonic()
    cluster.spawn(concurrency=2)
    [done] = cluster.wait_terminal([execution.id], timeout=30)
    print(f"timer overdue at restart; completed {time.monotonic() - restarted:.2f}s after the restart")
    assert done.status == "completed", done.error
    log = cluster.check_completed_once(done)
    [fired] = of_type(log, "timer_fired", "wait")
    assert fired.timestamp >= fires_at
    assert (fired.timestamp - fires_at).total_seconds() >= 1.0  # it fired late, after the restart
    assert [e.node_id for e in of_type(log, "node_completed")] == ["a", "wait", "b"]
    runs = cluster.runs(execution.id)
    assert [len(runs["a"]), len(runs["b"])] == [1, 1]
