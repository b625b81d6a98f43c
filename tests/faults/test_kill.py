"""`kill -9` of a worker process, in the middle of a node and at random
moments while many short steps are appended (spec section 8): another worker
finishes the execution, no completed node is lost or recorded twice, and an
interrupted handler runs again with the same idempotency key."""

from __future__ import annotations

import os
import random
import signal
import time
from collections import Counter

from tests.faults.cluster import Cluster, wait_until
from tests.helpers import chain, definition, fn, of_type


def test_kill_in_the_middle_of_a_node(cluster: Cluster) -> None:
    engine = cluster.engine
    engine.create_workflow(definition("hang", {"a": fn("step"), "b": fn("hang_once"), "c": fn("step")}, chain("a", "b", "c")))
    execution = engine.execute("hang", {"hang": 60})
    first = cluster.spawn(concurrency=2)

    marker = wait_until(lambda: next(cluster.markers.glob("exec-*"), None), 30, "the node to start hanging")
    assert int(marker.read_text()) == first.pid
    second = cluster.spawn(concurrency=2)
    assert engine.status(execution.id).status == "running"
    killed_at = time.monotonic()
    os.kill(first.pid, signal.SIGKILL)
    first.wait(timeout=10)

    [done] = cluster.wait_terminal([execution.id], timeout=30)
    recovery = time.monotonic() - killed_at
    print(f"kill -9 mid-node -> completed by another worker in {recovery:.2f}s (lease ttl 2s)")
    assert done.status == "completed", done.error
    assert recovery < 15
    log = cluster.check_completed_once(done)
    assert [e.node_id for e in of_type(log, "node_completed")] == ["a", "b", "c"]

    runs = cluster.runs(execution.id)
    assert [len(runs[n]) for n in ("a", "b", "c")] == [1, 2, 1]  # nothing completed is run again
    assert {r["key"] for r in runs["b"]} == {f"{execution.id}/b/1"}
    assert [r["pid"] for r in runs["b"]] == [first.pid, second.pid]
    assert of_type(log, "node_completed", "b")[0].payload["output"] == {"node": "b", "pid": second.pid}
    assert second.poll() is None  # the survivor is still serving


def test_kill_at_random_moments_while_appending(cluster: Cluster) -> None:
    """Many short steps, so appends are frequent; workers are killed at random
    instants (some land mid-append) and replaced."""
    seed = random.randrange(10**6)
    rng = random.Random(seed)
    print(f"random kill seed {seed}")
    engine = cluster.engine
    steps = [f"s{i}" for i in range(14)]
    nodes = {s: fn("step") for s in steps}
    nodes["m"] = {"type": "map", "config": {"items": "input.items", "node": fn("step")}}
    engine.create_workflow(definition("busy", nodes, chain(*steps, "m")))
    ids = [engine.execute("busy", {"sleep": 0.1, "items": [1, 2, 3]}).id for _ in range(12)]

    workers = [cluster.spawn(concurrency=4, wait_ready=False), cluster.spawn(concurrency=4, wait_ready=False)]
    for worker in workers:
        cluster.wait_ready(worker)
    kills = 0
    for _ in range(5):
        time.sleep(rng.uniform(0.1, 0.8))
        if all(engine.status(i).is_terminal for i in ids):
            break
        victim = workers.pop(rng.randrange(len(workers)))
        os.kill(victim.pid, signal.SIGKILL)
        victim.wait(timeout=10)
        kills += 1
        workers.append(cluster.spawn(concurrency=4, wait_ready=False))
    killed_at = time.monotonic()
    rows = cluster.wait_terminal(ids, timeout=60)
    print(f"{kills} kills; all {len(ids)} ended {time.monotonic() - killed_at:.2f}s after the last one")
    assert kills >= 2

    expected = {*steps, "m", "m[0]", "m[1]", "m[2]"}
    for row in rows:
        assert row.status == "completed", (row.id, row.error)
        log = cluster.check_completed_once(row)
        assert {e.node_id for e in of_type(log, "node_completed")} == expected
        runs = cluster.runs(row.id)
        assert set(runs) == expected - {"m"}  # no handler ran for a node the log does not have
        for node, invocations in runs.items():
            assert {r["key"] for r in invocations} == {f"{row.id}/{node}/1"}
            assert 1 <= len(invocations) <= kills + 1, (row.id, node, len(invocations))
    reruns = Counter(len(v) for row in rows for v in cluster.runs(row.id).values())
    print(f"handler runs per node run: {dict(reruns)}")
