"""The WorkflowValidator (spec section 6): every problem, each at its location."""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from typing import Any

import pytest

from cerebelum.domain.errors import Problem, ValidationError
from cerebelum.domain.validation import read_workflow, validate_document
from cerebelum.infrastructure.expressions import CelCompiler

COMPILER = CelCompiler()

# The example document of spec section 1, verbatim.
SPEC_EXAMPLE: dict[str, Any] = json.loads(
    """
{
  "name": "order_fulfilment",
  "version": 1,
  "entrypoint": "validate",
  "nodes": {
    "validate": {"type": "function", "config": {"handler": "validate_order",
                 "retry": {"max_attempts": 3, "initial_interval_s": 0.5, "backoff": 2.0}}},
    "route":    {"type": "conditional", "config": {}},
    "review":   {"type": "function", "config": {"handler": "manual_review", "timeout_s": 30}},
    "charge":   {"type": "function", "config": {"handler": "charge_card"}},
    "ship":     {"type": "map", "config": {"items": "results.validate.items", "max_concurrency": 4,
                 "node": {"type": "function", "config": {"handler": "ship_item"}}}},
    "notify":   {"type": "parallel", "config": {"branches": {
                   "email": {"type": "function", "config": {"handler": "send_email"}},
                   "sms":   {"type": "sequential", "config": {"steps": [
                              {"type": "delay", "config": {"seconds": 60}},
                              {"type": "function", "config": {"handler": "send_sms"}}]}}}}}
  },
  "edges": [
    {"from": "validate", "to": "route"},
    {"from": "route", "to": "review", "when": "results.validate.total > 1000"},
    {"from": "route", "to": "charge"},
    {"from": "review", "to": "charge", "when": "data.approved"},
    {"from": "charge", "to": "ship"},
    {"from": "ship", "to": "notify"}
  ],
  "output": "{'charged': results.charge, 'shipped': size(results.ship)}"
}
"""
)
SPEC_HANDLERS = {"validate_order", "manual_review", "charge_card", "ship_item", "send_email", "send_sms"}


def fn(handler: str = "h", **config: Any) -> dict[str, Any]:
    return {"type": "function", "config": {"handler": handler, **config}}


def base() -> dict[str, Any]:
    """A minimal valid definition: a -> b."""
    return {
        "name": "wf",
        "entrypoint": "a",
        "nodes": {"a": fn(), "b": fn()},
        "edges": [{"from": "a", "to": "b"}],
    }


def problems(doc: Any, handler_names: set[str] | None = None) -> list[Problem]:
    found = validate_document(doc, COMPILER, handler_names)
    # read_workflow agrees with validate_document: it raises with the same list
    if found:
        with pytest.raises(ValidationError) as info:
            read_workflow(doc, COMPILER, handler_names)
        assert info.value.problems == found
    else:
        read_workflow(doc, COMPILER, handler_names)
    return found


def assert_problem(found: list[Problem], location: str, keyword: str) -> None:
    matches = [p for p in found if p.location == location]
    assert matches, f"no problem at {location!r}; got {[str(p) for p in found]}"
    assert any(keyword.lower() in p.message.lower() for p in matches), (
        f"no problem at {location!r} mentions {keyword!r}; got {[str(p) for p in matches]}"
    )


def with_node(node_id: str, node: Any, edge_from: str = "b") -> Callable[[dict[str, Any]], None]:
    """Mutation: add `node_id` after `edge_from`, so it is reachable."""

    def mutate(doc: dict[str, Any]) -> None:
        doc["nodes"][node_id] = node
        doc["edges"].append({"from": edge_from, "to": node_id})

    return mutate


def set_node(node_id: str, node: Any) -> Callable[[dict[str, Any]], None]:
    def mutate(doc: dict[str, Any]) -> None:
        doc["nodes"][node_id] = node

    return mutate


def set_top(key: str, value: Any) -> Callable[[dict[str, Any]], None]:
    def mutate(doc: dict[str, Any]) -> None:
        doc[key] = value

    return mutate


def drop_top(key: str) -> Callable[[dict[str, Any]], None]:
    def mutate(doc: dict[str, Any]) -> None:
        del doc[key]

    return mutate


def set_edges(edges: Any) -> Callable[[dict[str, Any]], None]:
    return set_top("edges", edges)


# (case id, mutation of base(), location, keyword of the message)
CASES: list[tuple[str, Callable[[dict[str, Any]], None], str, str]] = [
    # -- top level --------------------------------------------------------------
    ("name-missing", drop_top("name"), "name", "required"),
    ("name-empty", set_top("name", ""), "name", "required"),
    ("name-bad-chars", set_top("name", "bad name!"), "name", "A-Za-z0-9"),
    ("name-too-long", set_top("name", "x" * 101), "name", "1-100"),
    ("name-not-string", set_top("name", 7), "name", "required"),
    ("version-zero", set_top("version", 0), "version", "integer >= 1"),
    ("version-string", set_top("version", "1"), "version", "integer"),
    ("version-bool", set_top("version", True), "version", "integer"),
    ("version-float", set_top("version", 1.5), "version", "integer"),
    ("entrypoint-missing", drop_top("entrypoint"), "entrypoint", "required"),
    ("entrypoint-empty", set_top("entrypoint", ""), "entrypoint", "required"),
    ("entrypoint-unknown", set_top("entrypoint", "nope"), "entrypoint", "unknown node 'nope'"),
    ("nodes-missing", drop_top("nodes"), "nodes", "required"),
    ("nodes-empty", set_top("nodes", {}), "nodes", "at least one node"),
    ("unknown-top-level-field", set_top("colour", "blue"), "colour", "unknown field"),
    # -- nodes ------------------------------------------------------------------
    ("node-id-bad", with_node("bad id", fn()), "nodes.bad id", "node ids"),
    ("node-id-dot", with_node("a.b", fn()), "nodes.a.b", "node ids"),
    ("node-not-object", set_node("b", "function"), "nodes.b", "object"),
    ("node-type-unknown", set_node("b", {"type": "lambda", "config": {}}), "nodes.b.type", "unknown node type"),
    ("node-type-missing", set_node("b", {"config": {"handler": "h"}}), "nodes.b.type", "unknown node type"),
    ("node-unknown-field", set_node("b", {**fn(), "retries": 3}), "nodes.b.retries", "unknown field"),
    ("config-not-object", set_node("b", {"type": "function", "config": ["h"]}), "nodes.b.config", "object"),
    ("config-unknown-field", set_node("b", fn(colour="red")), "nodes.b.config.colour", "unknown config field"),
    # -- function -----------------------------------------------------------------
    ("function-handler-missing", set_node("b", {"type": "function", "config": {}}), "nodes.b.config.handler", "required"),
    ("function-handler-empty", set_node("b", fn("")), "nodes.b.config.handler", "required"),
    ("function-handler-not-string", set_node("b", fn(3)), "nodes.b.config.handler", "required"),
    (
        "retry-max-attempts-zero",
        set_node("b", fn(retry={"max_attempts": 0})),
        "nodes.b.config.retry.max_attempts",
        "integer >= 1",
    ),
    (
        "retry-max-attempts-float",
        set_node("b", fn(retry={"max_attempts": 2.5})),
        "nodes.b.config.retry.max_attempts",
        "integer",
    ),
    ("retry-backoff-below-one", set_node("b", fn(retry={"backoff": 0.5})), "nodes.b.config.retry.backoff", ">= 1"),
    (
        "retry-initial-interval-negative",
        set_node("b", fn(retry={"initial_interval_s": -1})),
        "nodes.b.config.retry.initial_interval_s",
        ">= 0",
    ),
    (
        "retry-max-interval-negative",
        set_node("b", fn(retry={"max_interval_s": -0.1})),
        "nodes.b.config.retry.max_interval_s",
        ">= 0",
    ),
    ("retry-not-object", set_node("b", fn(retry=3)), "nodes.b.config.retry", "object"),
    ("retry-unknown-field", set_node("b", fn(retry={"jitter": 1})), "nodes.b.config.retry.jitter", "unknown config field"),
    ("timeout-zero", set_node("b", fn(timeout_s=0)), "nodes.b.config.timeout_s", "number"),
    ("timeout-negative", set_node("b", fn(timeout_s=-5)), "nodes.b.config.timeout_s", "number"),
    ("timeout-string", set_node("b", fn(timeout_s="30s")), "nodes.b.config.timeout_s", "number"),
    ("function-input-bad-expression", set_node("b", fn(input="data.")), "nodes.b.config.input", "invalid expression"),
    ("function-input-empty", set_node("b", fn(input="")), "nodes.b.config.input", "expression"),
    # -- parallel -----------------------------------------------------------------
    ("parallel-branches-missing", set_node("b", {"type": "parallel", "config": {}}), "nodes.b.config.branches", "required"),
    (
        "parallel-branches-empty",
        set_node("b", {"type": "parallel", "config": {"branches": {}}}),
        "nodes.b.config.branches",
        "required",
    ),
    (
        "parallel-branches-not-object",
        set_node("b", {"type": "parallel", "config": {"branches": [fn()]}}),
        "nodes.b.config.branches",
        "object",
    ),
    (
        "parallel-branch-name-bad",
        set_node("b", {"type": "parallel", "config": {"branches": {"bad name": fn()}}}),
        "nodes.b.config.branches.bad name",
        "branch names",
    ),
    (
        "parallel-branch-invalid",
        set_node("b", {"type": "parallel", "config": {"branches": {"x": {"type": "function", "config": {}}}}}),
        "nodes.b.config.branches.x.config.handler",
        "required",
    ),
    (
        "parallel-max-concurrency-negative",
        set_node("b", {"type": "parallel", "config": {"branches": {"x": fn()}, "max_concurrency": -1}}),
        "nodes.b.config.max_concurrency",
        "integer",
    ),
    # -- map ----------------------------------------------------------------------
    ("map-items-missing", set_node("b", {"type": "map", "config": {"node": fn()}}), "nodes.b.config.items", "expression"),
    (
        "map-items-bad-expression",
        set_node("b", {"type": "map", "config": {"items": "[1, 2", "node": fn()}}),
        "nodes.b.config.items",
        "invalid expression",
    ),
    ("map-node-missing", set_node("b", {"type": "map", "config": {"items": "data"}}), "nodes.b.config.node", "required"),
    (
        "map-node-invalid",
        set_node("b", {"type": "map", "config": {"items": "data", "node": {"type": "nope"}}}),
        "nodes.b.config.node.type",
        "unknown node type",
    ),
    (
        "map-max-concurrency-negative",
        set_node("b", {"type": "map", "config": {"items": "data", "node": fn(), "max_concurrency": -1}}),
        "nodes.b.config.max_concurrency",
        "integer",
    ),
    (
        "map-max-concurrency-float",
        set_node("b", {"type": "map", "config": {"items": "data", "node": fn(), "max_concurrency": 2.5}}),
        "nodes.b.config.max_concurrency",
        "integer",
    ),
    # -- sequential ---------------------------------------------------------------
    ("sequential-steps-missing", set_node("b", {"type": "sequential", "config": {}}), "nodes.b.config.steps", "non-empty"),
    (
        "sequential-steps-empty",
        set_node("b", {"type": "sequential", "config": {"steps": []}}),
        "nodes.b.config.steps",
        "non-empty",
    ),
    (
        "sequential-steps-not-list",
        set_node("b", {"type": "sequential", "config": {"steps": fn()}}),
        "nodes.b.config.steps",
        "list",
    ),
    (
        "sequential-step-invalid",
        set_node("b", {"type": "sequential", "config": {"steps": [fn(), {"type": "teleport", "config": {}}]}}),
        "nodes.b.config.steps[1].type",
        "unknown node type",
    ),
    # -- delay --------------------------------------------------------------------
    ("delay-neither", set_node("b", {"type": "delay", "config": {}}), "nodes.b.config", "exactly one"),
    (
        "delay-both",
        set_node("b", {"type": "delay", "config": {"seconds": 1, "until": "input.at"}}),
        "nodes.b.config",
        "exactly one",
    ),
    (
        "delay-seconds-negative",
        set_node("b", {"type": "delay", "config": {"seconds": -1}}),
        "nodes.b.config.seconds",
        ">= 0",
    ),
    (
        "delay-seconds-string",
        set_node("b", {"type": "delay", "config": {"seconds": "60"}}),
        "nodes.b.config.seconds",
        "number",
    ),
    (
        "delay-until-bad-expression",
        set_node("b", {"type": "delay", "config": {"until": "input.at +"}}),
        "nodes.b.config.until",
        "invalid expression",
    ),
    # -- edges --------------------------------------------------------------------
    ("edges-not-list", set_edges({"from": "a", "to": "b"}), "edges", "list"),
    ("edge-not-object", set_edges([{"from": "a", "to": "b"}, "a->b"]), "edges[1]", "object"),
    ("edge-from-unknown", set_edges([{"from": "zz", "to": "b"}, {"from": "a", "to": "b"}]), "edges[0].from", "unknown node"),
    (
        "edge-to-unknown",
        set_edges([{"from": "a", "to": "b"}, {"from": "b", "to": "a", "max_iterations": 1}, {"from": "b", "to": "zz"}]),
        "edges[2].to",
        "unknown node 'zz'",
    ),
    ("edge-from-missing", set_edges([{"to": "b"}]), "edges[0].from", "required"),
    ("edge-to-not-string", set_edges([{"from": "a", "to": 1}]), "edges[0].to", "required"),
    ("edge-unknown-field", set_edges([{"from": "a", "to": "b", "if": "true"}]), "edges[0].if", "unknown"),
    (
        "edge-max-iterations-zero",
        set_edges([{"from": "a", "to": "b", "max_iterations": 0}]),
        "edges[0].max_iterations",
        "integer >= 1",
    ),
    (
        "edge-max-iterations-string",
        set_edges([{"from": "a", "to": "b", "max_iterations": "3"}]),
        "edges[0].max_iterations",
        "integer",
    ),
    (
        "edge-when-bad-expression",
        set_edges([{"from": "a", "to": "b", "when": "data.x >"}, {"from": "a", "to": "b"}]),
        "edges[0].when",
        "invalid expression",
    ),
    (
        "edge-when-not-string",
        set_edges([{"from": "a", "to": "b"}, {"from": "a", "to": "b", "when": True}]),
        "edges[1].when",
        "expression",
    ),
    ("output-bad-expression", set_top("output", "{'a': }"), "output", "invalid expression"),
    ("output-not-string", set_top("output", {"a": 1}), "output", "expression"),
    # -- graph --------------------------------------------------------------------
    ("unreachable", set_node("island", fn()), "nodes.island", "unreachable"),
]


@pytest.mark.parametrize(("mutate", "location", "keyword"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_each_problem_is_reported_at_its_location(mutate: Callable[[dict[str, Any]], None], location: str, keyword: str) -> None:
    doc = base()
    mutate(doc)
    assert_problem(problems(doc), location, keyword)


def test_the_base_document_and_the_spec_example_are_valid() -> None:
    assert problems(base()) == []
    assert problems(copy.deepcopy(SPEC_EXAMPLE)) == []
    assert problems(copy.deepcopy(SPEC_EXAMPLE), SPEC_HANDLERS) == []
    workflow = read_workflow(copy.deepcopy(SPEC_EXAMPLE), COMPILER, SPEC_HANDLERS)
    assert workflow.name == "order_fulfilment"
    assert workflow.version == 1
    assert workflow.entrypoint == "validate"
    assert set(workflow.nodes) == {"validate", "route", "review", "charge", "ship", "notify"}
    assert [(e.source, e.target) for e in workflow.outgoing("route")] == [("route", "review"), ("route", "charge")]
    assert workflow.definition == SPEC_EXAMPLE


@pytest.mark.parametrize("nodes", [[fn()], "a", 5, True], ids=["list", "string", "number", "bool"])
def test_nodes_that_is_not_an_object_is_a_problem_not_a_crash(nodes: Any) -> None:
    doc = base()
    doc["nodes"] = nodes
    assert_problem(problems(doc), "nodes", "object")


@pytest.mark.parametrize("doc", [None, [], "name: wf", 42, True], ids=["null", "list", "string", "number", "bool"])
def test_a_document_that_is_not_an_object(doc: Any) -> None:
    found = problems(doc)
    assert found == [Problem("(document)", found[0].message)]
    assert "object" in found[0].message


def test_unknown_handler_is_reported_only_when_handlers_are_known() -> None:
    doc = base()
    doc["nodes"]["b"] = fn("no_such_handler")
    doc["nodes"]["p"] = {"type": "parallel", "config": {"branches": {"x": fn("ghost")}}}
    doc["edges"].append({"from": "b", "to": "p"})
    found = problems(doc, {"h"})
    assert_problem(found, "nodes.b.config.handler", "unknown handler 'no_such_handler'")
    assert_problem(found, "nodes.p.config.branches.x.config.handler", "unknown handler 'ghost'")
    assert len(found) == 2
    # without handler names, handlers are not checked (an unknown one fails at run time)
    assert problems(doc, None) == []
    assert problems(doc, {"h", "no_such_handler", "ghost"}) == []


@pytest.mark.parametrize("count", [0, 1])
def test_a_conditional_needs_two_outgoing_edges(count: int) -> None:
    doc = base()
    doc["nodes"]["route"] = {"type": "conditional", "config": {}}
    doc["edges"] = [{"from": "a", "to": "route"}, *[{"from": "route", "to": "b"}] * count]
    if count == 0:
        doc["nodes"].pop("b")
    found = problems(doc)
    assert_problem(found, "nodes.route", "at least 2 outgoing edges")
    assert len(found) == 1
    doc["nodes"]["b"] = fn()
    doc["edges"] = [
        {"from": "a", "to": "route"},
        {"from": "route", "to": "b", "when": "data.x > 1"},
        {"from": "route", "to": "b"},
    ]
    assert problems(doc) == []


def test_a_conditional_with_config_fields_is_rejected() -> None:
    doc = base()
    doc["nodes"]["route"] = {"type": "conditional", "config": {"when": "true"}}
    doc["nodes"]["c"] = fn()
    doc["edges"] += [
        {"from": "b", "to": "route"},
        {"from": "route", "to": "a", "max_iterations": 1},
        {"from": "route", "to": "c"},
    ]
    found = problems(doc)
    assert_problem(found, "nodes.route.config.when", "unknown config field")
    assert len(found) == 1


@pytest.mark.parametrize(
    ("container", "location"),
    [
        ({"type": "parallel", "config": {"branches": {"c": {"type": "conditional"}}}}, "nodes.b.config.branches.c"),
        ({"type": "sequential", "config": {"steps": [fn(), {"type": "conditional"}]}}, "nodes.b.config.steps[1]"),
        ({"type": "map", "config": {"items": "data", "node": {"type": "conditional"}}}, "nodes.b.config.node"),
    ],
    ids=["parallel", "sequential", "map"],
)
def test_conditionals_are_only_allowed_at_top_level(container: dict[str, Any], location: str) -> None:
    doc = base()
    doc["nodes"]["b"] = container
    assert_problem(problems(doc), location, "top level")


def test_expressions_that_do_not_compile_are_reported_where_they_are() -> None:
    doc = {
        "name": "expr",
        "entrypoint": "f",
        "nodes": {
            "f": fn(input="{'a': data.a"),
            "route": {"type": "conditional"},
            "ship": {"type": "map", "config": {"items": "results.f.items[", "node": fn()}},
            "d": {"type": "delay", "config": {"until": "input.when ++ 1"}},
        },
        "edges": [
            {"from": "f", "to": "route"},
            {"from": "route", "to": "ship", "when": "data.total >> 1000"},
            {"from": "route", "to": "d", "when": "has(data.x)"},
            {"from": "ship", "to": "d", "when": "!"},
        ],
        "output": "results.f.",
    }
    found = problems(doc)
    for location in (
        "edges[1].when",
        "edges[3].when",
        "nodes.ship.config.items",
        "nodes.f.config.input",
        "nodes.d.config.until",
        "output",
    ):
        assert_problem(found, location, "invalid expression")
    assert "edges[2].when" not in {p.location for p in found}
    assert len(found) == 6


def test_unreachable_nodes_are_each_reported() -> None:
    doc = base()
    doc["nodes"]["x"] = fn()
    doc["nodes"]["y"] = fn()
    doc["edges"].append({"from": "x", "to": "y"})  # reachable from x, but x is not reachable
    found = problems(doc)
    assert {p.location for p in found} == {"nodes.x", "nodes.y"}
    assert all("unreachable" in p.message for p in found)
    assert all("'a'" in p.message for p in found)  # names the entrypoint


def cycle_doc(bounded_edge: int | None) -> dict[str, Any]:
    """a -> b -> c -> a, then c -> end; optionally with max_iterations on one edge."""
    edges: list[dict[str, Any]] = [
        {"from": "a", "to": "b"},
        {"from": "b", "to": "c"},
        {"from": "c", "to": "a", "when": "data.again"},
        {"from": "c", "to": "end"},
    ]
    if bounded_edge is not None:
        edges[bounded_edge]["max_iterations"] = 3
    return {"name": "loop", "entrypoint": "a", "nodes": {n: fn() for n in ("a", "b", "c", "end")}, "edges": edges}


def test_a_cycle_without_max_iterations_is_reported_at_a_closing_edge() -> None:
    found = problems(cycle_doc(None))
    assert len(found) == 1
    problem = found[0]
    assert problem.location in {"edges[0]", "edges[1]", "edges[2]"}  # an edge of the cycle
    assert problem.location == "edges[2]"  # the DFS from the entrypoint closes it with c -> a
    assert "cycle" in problem.message
    for node in ("a", "b", "c"):
        assert f"{node}" in problem.message.replace("max_iterations", "")
    assert "end" not in problem.message


@pytest.mark.parametrize("bounded_edge", [0, 1, 2])
def test_the_same_cycle_with_max_iterations_on_one_edge_is_valid(bounded_edge: int) -> None:
    assert problems(cycle_doc(bounded_edge)) == []


def test_max_iterations_off_the_cycle_does_not_help() -> None:
    found = problems(cycle_doc(3))  # c -> end is not part of the cycle
    assert [p.location for p in found] == ["edges[2]"]
    assert "cycle" in found[0].message


def test_a_self_loop_is_a_cycle() -> None:
    doc = base()
    doc["edges"] = [{"from": "a", "to": "a", "when": "data.again"}, {"from": "a", "to": "b"}]
    found = problems(doc)
    assert [p.location for p in found] == ["edges[0]"]
    assert "cycle" in found[0].message
    assert "a -> a" in found[0].message
    doc["edges"][0]["max_iterations"] = 5
    assert problems(doc) == []


def test_two_independent_cycles_are_both_reported() -> None:
    doc = {
        "name": "loops",
        "entrypoint": "a",
        "nodes": {n: fn() for n in ("a", "b", "c", "d")},
        "edges": [
            {"from": "a", "to": "b"},
            {"from": "b", "to": "a", "when": "data.x"},
            {"from": "b", "to": "c"},
            {"from": "c", "to": "d"},
            {"from": "d", "to": "c", "when": "data.y"},
        ],
    }
    found = problems(doc)
    assert sorted(p.location for p in found) == ["edges[1]", "edges[4]"]
    assert all("cycle" in p.message for p in found)


def test_every_problem_is_reported_at_once() -> None:
    doc = {
        "name": "bad name",  # 1
        "version": 0,  # 2
        "entrypoint": "start",
        "colour": "red",  # 3
        "nodes": {
            "start": {"type": "function", "config": {"retry": {"max_attempts": 0}, "timeout_s": -1}},  # 4 handler, 5, 6
            "route": {"type": "conditional"},  # 7: one outgoing edge only
            "fan": {"type": "parallel", "config": {"branches": {"bad name": fn(), "c": {"type": "conditional"}}}},  # 8, 9
            "each": {"type": "map", "config": {"node": fn(), "max_concurrency": -2}},  # 10 items, 11
            "seq": {"type": "sequential", "config": {"steps": [fn(), {"type": "warp"}]}},  # 12
            "wait": {"type": "delay", "config": {"seconds": 1, "until": "input.t"}},  # 13
            "lost": fn(),  # 14: unreachable
            "bad id!": fn(),  # 15 id, 16 unreachable
        },
        "edges": [
            {"from": "start", "to": "route"},
            {"from": "route", "to": "fan", "when": "data >"},  # 17
            {"from": "fan", "to": "each"},
            {"from": "each", "to": "seq"},
            {"from": "seq", "to": "nowhere"},  # 18
            {"from": "seq", "to": "wait"},
            {"from": "wait", "to": "start"},  # 19: cycle start -> ... -> wait -> start
            {"from": "fan", "to": "each", "max_iterations": 0},  # 20
            "edge",  # 21
        ],
        "output": "results.",  # 22
    }
    found = problems(doc)
    expected = {
        "name",
        "version",
        "colour",
        "nodes.start.config.handler",
        "nodes.start.config.retry.max_attempts",
        "nodes.start.config.timeout_s",
        "nodes.route",
        "nodes.fan.config.branches.bad name",
        "nodes.fan.config.branches.c",
        "nodes.each.config.items",
        "nodes.each.config.max_concurrency",
        "nodes.seq.config.steps[1].type",
        "nodes.wait.config",
        "nodes.lost",
        "nodes.bad id!",
        "edges[1].when",
        "edges[4].to",
        "edges[6]",
        "edges[7].max_iterations",
        "edges[8]",
        "output",
    }
    locations = [p.location for p in found]
    assert set(locations) == expected
    # "nodes.bad id!" twice: a bad id and unreachable
    assert len(found) == 22
    assert sorted(p.message for p in found if p.location == "nodes.bad id!")[0].startswith("node ids")
    cycle = next(p for p in found if p.location == "edges[6]")
    assert "cycle" in cycle.message
    assert all(n in cycle.message for n in ("start", "route", "fan", "each", "seq", "wait"))
    # the error's text lists each problem with its location
    with pytest.raises(ValidationError) as info:
        read_workflow(doc, COMPILER)
    assert len(info.value.problems) == 22
    assert "edges[4].to: unknown node 'nowhere'" in str(info.value)


def test_non_retryable_is_a_list_of_exception_class_names_each_problem_located() -> None:
    def doc(names: Any) -> dict[str, Any]:
        retry = {"max_attempts": 3, "non_retryable": names}
        return {"name": "n", "entrypoint": "a", "nodes": {"a": {"type": "function", "config": {"handler": "h", "retry": retry}}}}

    workflow = read_workflow(doc(["ValueError", "myapp.errors.Declined"]), COMPILER)
    node = workflow.nodes["a"]
    assert node.retry.non_retryable == ("ValueError", "myapp.errors.Declined")  # type: ignore[union-attr]
    problems = validate_document(doc(["ValueError", 3, "", "not a name", "a..b"]), COMPILER)
    assert [p.location for p in problems] == [f"nodes.a.config.retry.non_retryable[{i}]" for i in (1, 2, 3, 4)]
    assert all("exception class name" in p.message for p in problems)
    assert [p.location for p in validate_document(doc("ValueError"), COMPILER)] == ["nodes.a.config.retry.non_retryable"]
