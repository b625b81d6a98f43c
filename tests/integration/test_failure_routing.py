"""Error edges (interaction spec section 2): a node that fails for good routes to
its first error edge that holds, with `data` = the error; over memory, SQLite
and PostgreSQL, replayed strictly."""

from __future__ import annotations

from typing import Any

import pytest
from tests.helpers import check_log, definition, fn, of_type

import cerebelum
from cerebelum.application.mermaid import to_mermaid
from cerebelum.bootstrap import expression_compiler
from cerebelum.domain.validation import read_workflow, validate_document


class Declined(Exception):
    pass


@pytest.fixture
def saga(registry: cerebelum.HandlerRegistry) -> list[str]:
    done: list[str] = []

    def step(name: str, fail: bool = False) -> Any:
        def run(ctx: cerebelum.StepContext) -> Any:
            done.append(name)
            if fail and ctx.input.get("decline"):
                raise Declined("card declined")
            return {name: True}

        return run

    registry.register("reserve", step("reserve"))
    registry.register("charge", step("charge", fail=True))
    registry.register("ship", step("ship"))
    registry.register("release", lambda ctx: done.append("release") or {"released": ctx.data})
    return done


SAGA = definition(
    "booking",
    {"reserve": fn("reserve"), "charge": fn("charge", retry={"max_attempts": 2, "initial_interval_s": 0.01}),
     "ship": fn("ship"), "release": fn("release")},
    [
        {"from": "reserve", "to": "charge"},
        {"from": "charge", "to": "ship"},
        {"from": "charge", "to": "ship", "on": "error", "when": "error.kind == 'timeout'"},
        {"from": "charge", "to": "release", "on": "error", "when": "error.kind == 'handler_error'"},
    ],
)  # fmt: skip


def test_a_failed_step_routes_to_its_compensation_with_the_error_as_data(engine, saga):
    execution = engine.run(SAGA, {"decline": True})
    assert execution.status == "completed", execution.error
    assert saga == ["reserve", "charge", "charge", "release"]  # after its retries, then the compensation
    released = execution.output["released"]
    assert released["kind"] == "handler_error" and released["node"] == "charge" and released["attempt"] == 2
    assert "card declined" in released["message"]
    log = check_log(engine, execution)
    [taken] = [e for e in of_type(log, "edge_taken") if e.payload.get("on") == "error"]
    assert taken.payload["to"] == "release" and taken.payload["edge"] == 3 and taken.payload["error"] == released
    state = engine.state_at(execution.id)
    assert "charge" not in state["results"] and state["results"]["release"] == {"released": released}
    assert engine.replay(execution.id, strict=True).identical


def test_a_success_never_takes_an_error_edge(engine, saga):
    execution = engine.run(SAGA, {})
    assert execution.status == "completed" and execution.output == {"ship": True}
    assert saga == ["reserve", "charge", "ship"]
    assert all(e.payload.get("on") is None for e in of_type(engine.events(execution.id), "edge_taken"))


def test_without_an_error_edge_that_holds_the_execution_fails_as_before(engine, saga):
    edges = [{**e, "when": "error.kind == 'declined'"} if e["to"] == "release" else e for e in SAGA["edges"]]
    flow = {**SAGA, "name": "strict", "edges": edges}
    execution = engine.run(flow, {"decline": True})
    assert execution.status == "failed" and execution.error["kind"] == "handler_error"
    assert execution.error["node"] == "charge" and saga == ["reserve", "charge", "charge"]


def test_an_error_edge_back_to_the_node_retries_it_within_max_iterations(engine, registry):
    attempts: list[int] = []

    def flaky(ctx: cerebelum.StepContext) -> Any:
        attempts.append(1)
        if len(attempts) < 3:
            raise RuntimeError(f"try {len(attempts)}")
        return {"ok": len(attempts)}

    registry.register("flaky", flaky)
    flow = definition("again", {"work": fn("flaky")}, [{"from": "work", "to": "work", "on": "error", "max_iterations": 5}])
    execution = engine.run(flow, {})
    assert execution.status == "completed" and execution.output == {"ok": 3}
    assert len(of_type(engine.events(execution.id), "node_failed", "work")) == 2
    bounded = definition("bounded", {"work": fn("flaky")}, [{"from": "work", "to": "work", "on": "error", "max_iterations": 1}])
    attempts.clear()
    failed = engine.run(bounded, {})
    assert failed.status == "failed" and failed.error["message"] == "RuntimeError: try 2"


def test_a_failed_map_routes_and_the_error_names_the_item(engine, registry):
    registry.register("pick", lambda ctx: 1 // ctx.item)
    registry.register("report", lambda ctx: {"failed": ctx.data["node"]})
    flow = definition(
        "items",
        {"each": {"type": "map", "config": {"items": "input.xs", "node": fn("pick")}}, "report": fn("report")},
        [{"from": "each", "to": "report", "on": "error"}],
    )
    execution = engine.run(flow, {"xs": [1, 0, 2]})
    assert execution.status == "completed" and execution.output == {"failed": "each[1]"}


def test_validation_reports_a_bad_on_with_every_other_problem():
    compiler = expression_compiler()
    doc = {**SAGA, "edges": [*SAGA["edges"], {"from": "ship", "to": "nowhere", "on": "failure"}]}
    problems = {p.location: p.message for p in validate_document(doc, compiler)}
    assert problems["edges[4].on"] == "must be 'success' or 'error', got 'failure'"
    assert problems["edges[4].to"] == "unknown node 'nowhere'"


def test_graph_draws_error_edges_dashed():
    text = to_mermaid(read_workflow(SAGA, expression_compiler()))
    assert "charge -.->|\"on error; error.kind == 'handler_error'\"| release" in text
    assert "reserve --> charge" in text
