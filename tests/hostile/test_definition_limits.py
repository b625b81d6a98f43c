"""Definitions under hostile input (interaction.md section 12; docs/limits.md):
YAML without aliases or non-JSON values, caps on nodes, inline nesting and
document depth (located problems), items per map and events per execution
(failure kind `limit_exceeded`)."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

import cerebelum
from cerebelum.domain.limits import Limits
from cerebelum.domain.validation import validate_document
from cerebelum.infrastructure.documents import DocumentError, parse_document
from cerebelum.infrastructure.expressions import CelCompiler
from tests.e2e.test_serve import CLI
from tests.helpers import check_log, definition, fn, of_type
from tests.hostile.core_support import limits_setter


@pytest.fixture
def set_limits(monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[..., None]]:
    yield from limits_setter(monkeypatch)


# The "billion laughs": a few hundred bytes that expand to millions of nodes.
LAUGHS = "\n".join(
    ["a: &a [x, x, x, x, x, x, x, x, x, x]"]
    + [f"{chr(98 + i)}: &{chr(98 + i)} [{', '.join(['*' + chr(97 + i)] * 10)}]" for i in range(7)]
)


def test_yaml_aliases_are_refused_located_without_expanding_them() -> None:
    assert len(LAUGHS) < 600
    started = time.monotonic()
    with pytest.raises(DocumentError, match=r"line 1 column 4: YAML aliases are not supported"):
        parse_document(LAUGHS, "flow.yaml", ".yaml")
    assert time.monotonic() - started < 0.5
    with pytest.raises(DocumentError, match=r"line 2 column 4: YAML aliases are not supported"):
        parse_document("a: [1]\nb: *x\n", "flow.yaml", ".yaml")  # an alias alone (unknown anchor) too


@pytest.mark.parametrize(
    ("text", "what"),
    [
        ("name: x\nwhen: 2024-01-01\n", "timestamp"),
        ("name: x\nblob: !!binary aGVsbG8=\n", "binary"),
        ("name: x\ntags: !!set {a, b}\n", "set"),
        ("name: x\nn: .nan\n", ".nan"),
        ("name: x\nn: -.inf\n", ".inf"),
        ("name: x\npairs: !!omap [a: 1]\n", "omap"),
    ],
)
def test_yaml_values_that_are_not_json_are_refused_located(text: str, what: str) -> None:
    with pytest.raises(DocumentError, match=r"flow.yaml: invalid YAML at line 2 column \d+: .*not") as caught:
        parse_document(text, "flow.yaml", ".yaml")
    assert what in str(caught.value)


def test_plain_yaml_still_reads_and_quoted_dates_are_strings() -> None:
    assert parse_document("a: 1.5\nb: '2024-01-01'\nc: [1, {d: e}]\n", "f", ".yaml") == {
        "a": 1.5,
        "b": "2024-01-01",
        "c": [1, {"d": "e"}],
    }


def test_cli_validate_refuses_an_aliased_yaml_with_exit_2(tmp_path: Path) -> None:
    (tmp_path / "flow.yaml").write_text(LAUGHS)
    result = subprocess.run([CLI, "validate", "flow.yaml"], cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert result.returncode == 2, result
    assert "YAML aliases are not supported" in result.stdout + result.stderr


def _nested_sequential(depth: int) -> dict[str, Any]:
    node: dict[str, Any] = fn("one")
    for _ in range(depth):
        node = {"type": "sequential", "config": {"steps": [node]}}
    return node


def test_inline_nesting_is_capped_located() -> None:
    assert validate_document(definition("deep", {"a": _nested_sequential(32)}), CelCompiler()) == []
    problems = validate_document(definition("deep", {"a": _nested_sequential(33)}), CelCompiler())
    location = "nodes.a" + ".config.steps[0]" * 33
    assert [(p.location, p.message) for p in problems] == [(location, "inline nodes are nested more than 32 levels deep")]


def test_nodes_per_definition_are_capped_located() -> None:
    def sequential(steps: int) -> dict[str, Any]:
        return definition("many", {"a": {"type": "sequential", "config": {"steps": [fn("one")] * steps}}})

    assert validate_document(sequential(999), CelCompiler()) == []  # 1,000 nodes with the sequential
    problems = validate_document(sequential(1000), CelCompiler())
    assert [p.location for p in problems] == ["nodes.a.config.steps[999]"]
    assert "more than 1000 nodes" in problems[0].message
    assert validate_document(sequential(1000), CelCompiler(), limits=Limits(max_nodes=1001)) == []
    edges = [{"from": f"n{i}", "to": f"n{i + 1}"} for i in range(1000)]
    wide = definition("wide", {f"n{i}": fn("one") for i in range(1001)}, edges)
    problems = validate_document(wide, CelCompiler())
    assert problems[0].location == "nodes.n1000" and "more than 1000 nodes" in problems[0].message


def _deep(depth: int) -> Any:
    value: Any = "bottom"
    for _ in range(depth):
        value = {"d": value}
    return value


def test_a_deep_definition_is_refused_located_and_the_deepest_allowed_one_lists_fine(engine: cerebelum.Engine) -> None:
    deep = definition("deep", {"a": fn("one")}, metadata=_deep(127))  # 128 levels with the document itself
    too_deep = definition("too_deep", {"a": fn("one")}, metadata=_deep(128))
    with pytest.raises(cerebelum.ValidationError) as caught:
        engine.create_workflow(too_deep)
    assert [p.location for p in caught.value.problems] == ["metadata" + ".d" * 127]
    assert "nested deeper than 128 levels" in caught.value.problems[0].message
    stored = engine.create_workflow(deep)
    assert [w.name for w in engine.workflows()] == ["deep"]
    assert engine.get_workflow("deep").definition == stored.definition == deep | {"version": 1}


def test_map_items_are_capped_with_limit_exceeded(engine: cerebelum.Engine, registry, set_limits) -> None:
    set_limits(max_map_items=5)
    registry.register("one", lambda ctx: 1)
    flow = definition("fan", {"m": {"type": "map", "config": {"items": "input.xs", "node": fn("one")}}})
    assert engine.run(flow, {"xs": [1, 2, 3, 4, 5]}).output == [1, 1, 1, 1, 1]
    execution = engine.run("fan", {"xs": [1, 2, 3, 4, 5, 6]})
    assert execution.status == "failed"
    assert execution.error["kind"] == "limit_exceeded" and execution.error["location"] == "nodes.m.config.items"
    assert "6 items, more than the limit of 5" in execution.error["message"]
    log = check_log(engine, execution)
    assert of_type(log, "node_completed") == []  # no item ran


def test_the_default_map_cap_is_ten_thousand(registry) -> None:
    registry.register("one", lambda ctx: 1)
    flow = definition("fan", {"m": {"type": "map", "config": {"items": "input.xs", "node": fn("one")}}})
    with cerebelum.Engine("memory://", handlers=registry) as engine:
        started = time.monotonic()
        execution = engine.run(flow, {"xs": list(range(10_001))})
        assert execution.status == "failed" and execution.error["kind"] == "limit_exceeded"
        assert time.monotonic() - started < 10


def test_events_per_execution_are_capped_with_limit_exceeded(engine: cerebelum.Engine, registry, set_limits) -> None:
    """The issue's loop with max_iterations 10^9: it now ends at the cap."""
    set_limits(max_events=60)
    registry.register("one", lambda ctx: 1)
    flow = definition(
        "spin", {"a": fn("one"), "b": fn("one")}, [{"from": "a", "to": "b"}, {"from": "b", "to": "a", "max_iterations": 10**9}]
    )
    execution = engine.run(flow, virtual_time=True)
    assert execution.status == "failed"
    assert execution.error["kind"] == "limit_exceeded" and execution.error["limit"] == "max_events"
    log = check_log(engine, execution)
    assert 60 <= len(log) <= 62  # the cap, plus the failure itself
    assert len(of_type(log, "execution_failed")) == 1
