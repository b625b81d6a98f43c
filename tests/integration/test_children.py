"""Sub-workflows: the `workflow` node (interaction spec section 4), through the
Engine over memory, SQLite and PostgreSQL."""

from __future__ import annotations

import threading
import time
from collections import Counter
from datetime import timedelta
from typing import Any

import pytest
from tests.helpers import chain, check_log, definition, fn

import cerebelum
from cerebelum.application.retention import purge_executions
from cerebelum.domain.errors import ValidationError
from cerebelum.domain.execution import Execution, child_execution_id


def sub(workflow: str, **config: Any) -> dict[str, Any]:
    return {"type": "workflow", "config": {"workflow": workflow, **config}}


CHILD = definition("charge", {"charge": fn("charge")})
PARENT = definition(
    "order",
    {"prepare": fn("prepare"), "pay": sub("charge", input="{'amount': data.total}"), "ship": fn("ship")},
    chain("prepare", "pay", "ship"),
)


@pytest.fixture
def calls(registry: cerebelum.HandlerRegistry) -> Counter[str]:
    seen: Counter[str] = Counter()

    def charge(ctx: Any) -> Any:
        seen["charge"] += 1
        if ctx.data.get("amount", 0) < 0:
            raise ValueError("negative amount")
        return {"charged": ctx.data["amount"], "seed": ctx.randint(0, 10**9)}

    registry.register("prepare", lambda ctx: seen.update(["prepare"]) or {"total": ctx.input.get("total", 7)})
    registry.register("charge", charge)
    registry.register("ship", lambda ctx: seen.update(["ship"]) or {"shipped": ctx.data})
    registry.register("double", lambda ctx: ctx.data * 2)
    registry.register("total", lambda ctx: sum(ctx.data))
    return seen


def test_a_child_runs_as_its_own_execution_and_the_parent_goes_on_with_its_output(engine, calls):
    engine.create_workflow(CHILD)
    engine.create_workflow(PARENT)
    execution = engine.execute("order", {"total": 12})
    done = engine.wait(execution.id, timeout=20)
    assert done.status == "completed", done.error
    assert done.output["shipped"]["charged"] == 12
    log = check_log(engine, done)
    started = next(e for e in log if e.type == "node_started" and e.node_id == "pay")
    child_id = started.payload["child"]
    assert child_id == child_execution_id(done.id, "pay", 1)
    child = engine.status(child_id)
    assert child.status == "completed" and child.workflow == "charge" and child.input == {"amount": 12}
    assert child.to_json()["parent"] == {"execution_id": done.id, "node": "pay"} and child.depth == 1
    assert [c.id for c in engine.executions(parent=done.id)] == [child_id]
    completed = next(e for e in log if e.type == "node_completed" and e.node_id == "pay")
    assert completed.payload["child"] == child_id and log[completed.payload["signal"]].type == "signal_received"
    check_log(engine, child)
    assert calls == {"prepare": 1, "charge": 1, "ship": 1}
    assert engine.replay(done.id, strict=True).identical  # served from the parent's log: the child is not run again
    assert engine.replay(child_id, strict=True).identical
    assert calls["charge"] == 2  # the child's own strict replay re-invoked its handler once


def test_run_runs_the_children_in_this_process_with_the_clock_mode_and_a_derived_seed(store_url, registry, calls):
    with cerebelum.Engine(store_url, handlers=registry, workers=0) as engine:
        engine.create_workflow(CHILD)
        first = engine.run(PARENT, {"total": 3}, virtual_time=True, seed=42)
        second = engine.run(PARENT, {"total": 3}, virtual_time=True, seed=42)
        assert first.status == second.status == "completed", first.error
        [child] = engine.executions(parent=first.id)
        assert child.virtual_time and child.seed != first.seed
        assert first.output["shipped"]["seed"] == second.output["shipped"]["seed"]  # derived from the parent's seed


def test_a_map_of_children_keeps_its_concurrency_bound(engine, calls):
    engine.create_workflow(definition("twice", {"d": fn("double")}))
    doc = definition(
        "fan",
        {"each": {"type": "map", "config": {"items": "input", "max_concurrency": 2, "node": sub("twice")}}, "sum": fn("total")},
        chain("each", "sum"),
    )
    done = engine.run(doc, [1, 2, 3, 4, 5])
    assert done.status == "completed", done.error
    assert done.output == 30
    children = engine.executions(parent=done.id)
    assert sorted(c.parent_node or "" for c in children) == [f"each[{i}]" for i in range(5)]
    running = peak = 0
    for event in engine.events(done.id):
        if event.node_id and event.node_id.startswith("each[") and event.type == "node_started":
            running += 1
            peak = max(peak, running)
        elif event.node_id and event.node_id.startswith("each[") and event.type == "node_completed":
            running -= 1
    assert peak == 2


def test_a_failed_child_fails_the_node_with_child_failed_which_an_error_edge_routes(engine, calls):
    engine.create_workflow(CHILD)
    doc = definition(
        "careful",
        {"pay": sub("charge", input="{'amount': -1}"), "ship": fn("ship"), "refund": fn("prepare")},
        [{"from": "pay", "to": "ship"}, {"from": "pay", "to": "refund", "on": "error", "when": "error.kind == 'child_failed'"}],
    )
    done = engine.run(doc, {})
    assert done.status == "completed", done.error
    failed = next(e for e in engine.events(done.id) if e.type == "node_failed")
    child_id = child_execution_id(done.id, "pay", 1)
    assert failed.payload["error"]["kind"] == "child_failed"
    assert child_id in failed.payload["error"]["message"] and "negative amount" in failed.payload["error"]["message"]
    assert engine.status(child_id).status == "failed"
    assert calls["ship"] == 0 and calls["prepare"] == 1


def test_cancelling_a_parent_cancels_its_unfinished_children(engine, registry):
    release = threading.Event()
    registry.register("block", lambda ctx: release.wait(20) and "done")
    engine.create_workflow(definition("slow", {"b": fn("block")}))
    engine.create_workflow(definition("wrapper", {"run": sub("slow")}))
    execution = engine.execute("wrapper", {})
    child_id = child_execution_id(execution.id, "run", 1)
    deadline = time.monotonic() + 15
    while not any(e.type == "node_started" for e in _events(engine, child_id)):
        assert time.monotonic() < deadline
        time.sleep(0.02)
    engine.cancel(execution.id)
    assert engine.wait(execution.id, timeout=15).error["kind"] == "cancelled"
    child = engine.wait(child_id, timeout=15)
    release.set()
    assert child.status == "failed" and child.error["kind"] == "cancelled"


def _events(engine: cerebelum.Engine, execution_id: str) -> list[cerebelum.Event]:
    try:
        return engine.events(execution_id)
    except cerebelum.NotFound:
        return []


def test_recursion_without_end_stops_at_the_depth_bound(engine, calls):
    doc = definition("forever", {"again": sub("forever")})
    engine.create_workflow(doc)
    done = engine.run("forever", {})
    assert done.status == "failed"
    chain_ids = [done.id]
    while len(chain_ids) < 20:
        children = engine.executions(parent=chain_ids[-1])
        if not children:
            break
        chain_ids.append(children[0].id)
    assert len(chain_ids) == 17  # the top and 16 nested children
    deepest = engine.status(chain_ids[-1])
    assert deepest.depth == 16 and deepest.error["kind"] == "depth_exceeded"
    assert all(engine.status(i).is_terminal for i in chain_ids)
    assert done.error["kind"] == "child_failed"


def test_a_workflow_node_must_name_a_stored_workflow(engine, calls):
    engine.create_workflow(CHILD)
    doc = definition(
        "bad",
        {"a": sub("nope"), "b": {"type": "parallel", "config": {"branches": {"x": sub("charge", version=9)}}}},
        chain("a", "b"),
    )
    with pytest.raises(ValidationError) as caught:
        engine.create_workflow(doc)
    assert {p.location for p in caught.value.problems} == {"nodes.a.config.workflow", "nodes.b.config.branches.x.config.workflow"}
    problems = {p.location for p in engine.validate(definition("worse", {"a": {"type": "workflow", "config": {"version": 0}}}))}
    assert problems == {"nodes.a.config.workflow", "nodes.a.config.version"}


def test_a_child_whose_workflow_was_deleted_fails_the_node_naming_it(engine, calls):
    stored = engine.create_workflow(CHILD)
    engine.create_workflow(PARENT)
    engine.delete_workflow("charge", stored.version)
    done = engine.run("order", {})
    assert done.status == "failed"
    failure = done.error
    assert failure["kind"] == "unknown_workflow" and "charge" in failure["message"] and failure["node"] == "pay"
    assert engine.replay(done.id).identical


def test_a_purge_never_takes_the_parent_of_an_unfinished_child(store_url, registry, calls):
    """A parent that ended while its child did not (a cancel on its way to the child):
    the purge keeps the parent until the child has ended too."""
    with cerebelum.Engine(store_url, handlers=registry, workers=0) as engine:
        engine.create_workflow(CHILD)
        engine.create_workflow(definition("wrapper", {"pay": sub("charge", input="{'amount': 1}")}))
        parent = engine.execute("wrapper", {})
        engine.signal(parent.id, "nudge")  # the sender starts its log; no worker runs it
        child = engine.status(parent.id)
        assert child.status == "running"
        engine.cancel(parent.id)  # nobody ran the node: no child yet, so plant one that is still running
        engine.store.executions.create(
            Execution(
                id=child_execution_id(parent.id, "pay", 1), workflow="charge", version=1, status="pending", input={},
                seed=1, virtual_time=False, created_at=engine.clock.now(), parent_id=parent.id, parent_node="pay", depth=1,
            )
        )  # fmt: skip
        assert purge_executions(engine.store.executions, engine.clock, timedelta(0)).count == 0
        assert engine.status(parent.id).status == "failed"
        engine.cancel(child_execution_id(parent.id, "pay", 1))
        assert purge_executions(engine.store.executions, engine.clock, timedelta(0)).count == 2
