"""Signals against real worker processes killed with SIGKILL (interaction spec
section 1): a parked execution holds no worker, a signal wakes it in another
process, and a worker killed while it holds a waiting execution loses nothing."""

from __future__ import annotations

import time

from tests.faults.cluster import Cluster, wait_until
from tests.helpers import chain, definition, fn, of_type


def waits_for(cluster: Cluster, execution_id: str) -> bool:
    return bool(cluster.engine.state_at(execution_id)["waiting_for_signals"])


def test_a_parked_wait_survives_every_worker_and_wakes_on_its_signal(cluster: Cluster) -> None:
    engine = cluster.engine
    doc = definition("approve", {"a": fn("step"), "approve": {"type": "wait", "config": {"signal": "go"}}, "b": fn("step")})
    doc["edges"] = chain("a", "approve", "b")
    engine.create_workflow(doc)
    execution = engine.execute("approve", {})
    worker = cluster.spawn(concurrency=2)

    def parked() -> bool:
        counts = engine.store.queue.counts()
        return waits_for(cluster, execution.id) and counts["parked"] == 1 and counts["leased"] == 0

    wait_until(parked, 15, "the execution to park at its wait")
    cluster.kill(worker)  # nothing held: nothing to lose
    replacement = cluster.spawn(concurrency=2)
    time.sleep(0.5)
    assert not of_type(engine.events(execution.id), "signal_received")
    sent_at = time.monotonic()
    sequence = engine.signal(execution.id, "go", {"ok": 1})  # from this process: the worker wakes at once
    [done] = cluster.wait_terminal([execution.id], timeout=30)
    print(f"woken and completed {time.monotonic() - sent_at:.3f}s after the signal")
    assert done.status == "completed", done.error
    log = cluster.check_completed_once(done)
    assert log[sequence].type == "signal_received"
    assert [len(runs) for runs in cluster.runs(execution.id).values()] == [1, 1]
    assert replacement.poll() is None


def test_a_worker_killed_while_it_holds_a_waiting_execution_loses_no_signal(cluster: Cluster) -> None:
    """The wait runs beside a hanging branch, so the worker holds the lease when the
    signal comes: the signal waits in the inbox, the worker dies, the next one takes it."""
    engine = cluster.engine
    branches = {"slow": fn("hang_once"), "approval": {"type": "wait", "config": {"signal": "go"}}}
    doc = definition("held", {"both": {"type": "parallel", "config": {"branches": branches}}, "after": fn("step")})
    doc["edges"] = chain("both", "after")
    engine.create_workflow(doc)
    execution = engine.execute("held", {"hang": 30})
    worker = cluster.spawn(concurrency=2)
    wait_until(lambda: waits_for(cluster, execution.id) and list(cluster.markers.iterdir()), 15, "the hang and the wait")
    signal_id = engine.store.signals.offer(execution.id, "go", "kept", None, engine.clock.now()).id  # the inbox only
    cluster.kill(worker)
    cluster.spawn(concurrency=2)
    [done] = cluster.wait_terminal([execution.id], timeout=40)
    assert done.status == "completed", done.error
    assert done.output == {"node": "after"}
    log = cluster.check_completed_once(done)
    [received] = of_type(log, "signal_received")
    assert received.payload["id"] == signal_id and received.payload["payload"] == "kept"
    assert engine.store.signals.sequence_of(execution.id, signal_id) == received.sequence
