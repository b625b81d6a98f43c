"""`kill -9` of an old-version worker in the middle of a node of a `pinned`
execution, with only new-version workers left (docs/deploys.md): the execution
waits, visibly, never failed nor upgraded; a restarted old-version worker
completes it exactly once."""

from __future__ import annotations

import os
import signal
import time

from tests.faults.cluster import LEASE_TTL, POLL, Cluster, wait_until
from tests.helpers import chain, definition, fn, of_type


def test_pinned_execution_waits_for_a_worker_of_its_code_version_after_a_kill(cluster: Cluster) -> None:
    engine = cluster.engine
    nodes = {"a": fn("hang_once"), "b": fn("step")}
    engine.create_workflow(definition("pinned_hang", nodes, chain("a", "b"), versioning="pinned"))
    execution = engine.execute("pinned_hang", {"hang": 60})
    old = cluster.spawn(concurrency=2, code_version="v1")
    marker = wait_until(lambda: next(cluster.markers.glob("exec-*"), None), 30, "node a to start hanging")
    assert int(marker.read_text()) == old.pid
    new = cluster.spawn(concurrency=2, code_version="v2")
    os.kill(old.pid, signal.SIGKILL)
    old.wait(timeout=10)

    # Only v2 is left: the killed worker's lease lapses, and nobody takes it over (a claim would renew it).
    wait_until(lambda: engine.store.queue.counts()["expired"] == 1, 10 * LEASE_TTL, "the lease to lapse")
    time.sleep(10 * POLL)  # v2 polls ten times meanwhile
    assert engine.store.queue.counts()["expired"] == 1
    row = engine.status(execution.id)
    assert (row.status, row.code_version, row.waiting_for_code_version) == ("running", "v1", "v1")
    assert engine.store.queue.per_code_version() == {("v1", "pinned"): 1}
    assert len(cluster.runs(execution.id)["a"]) == 1  # v2 ran nothing of it
    assert new.poll() is None

    again = cluster.spawn(concurrency=2, code_version="v1")
    [done] = cluster.wait_terminal([execution.id], timeout=30)
    assert done.status == "completed", done.error
    assert (done.code_version, done.waiting_for_code_version) == ("v1", None)
    log = cluster.check_completed_once(done)
    assert not of_type(log, "code_version_changed")
    assert {e.code_version for e in of_type(log, "node_completed")} == {"v1"}
    runs = cluster.runs(execution.id)
    assert [r["pid"] for r in runs["a"]] == [old.pid, again.pid]  # the interrupted node ran again, by v1
    assert [r["pid"] for r in runs["b"]] == [again.pid]
    assert {r["key"] for r in runs["a"]} == {f"{execution.id}/a/1"}


def test_a_rolling_deploy_continues_an_execution_on_the_new_code_version_once(cluster: Cluster) -> None:
    """`upgrade` (the default): v1 runs the first node and parks on a timer; v1 is stopped
    and v2 started; v2 records the change once, then runs the rest."""
    engine = cluster.engine
    nodes = {"a": fn("step"), "nap": {"type": "delay", "config": {"seconds": 3}}, "b": fn("step")}
    engine.create_workflow(definition("rolling", nodes, chain("a", "nap", "b")))
    execution = engine.execute("rolling", {})
    old = cluster.spawn(concurrency=2, code_version="v1")
    wait_until(lambda: of_type(engine.events(execution.id), "timer_started"), 30, "the timer to start")
    assert cluster.stop(old) == 0, cluster.logs()
    cluster.spawn(concurrency=2, code_version="v2")
    [done] = cluster.wait_terminal([execution.id], timeout=30)
    assert done.status == "completed", done.error
    log = cluster.check_completed_once(done)
    [changed] = of_type(log, "code_version_changed")
    assert (changed.payload["from"], changed.payload["to"]) == ("v1", "v2")
    [a] = of_type(log, "node_completed", "a")
    [b] = of_type(log, "node_completed", "b")
    assert (a.code_version, b.code_version) == ("v1", "v2") and changed.sequence < b.sequence
    assert engine.status(done.id).code_version == "v2"
