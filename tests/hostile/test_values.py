"""Input and output values are checked once, the same on every backend,
before anything is committed (interaction.md section 12; docs/limits.md):
lone surrogates, values nested deeper than 128 levels and integers beyond
64 bits are refused (InvalidInput with nothing created, or a located
`invalid_output` for a handler's output); what is accepted reads back
exactly, on memory://, SQLite and PostgreSQL alike."""

from __future__ import annotations

from typing import Any

import pytest

import cerebelum
from cerebelum.application.execute_workflow import InvalidInput
from cerebelum.domain.errors import ExpressionError
from cerebelum.infrastructure.expressions import CelCompiler
from tests.helpers import check_log, definition, fn

INT64_MAX = 2**63 - 1


def _deep(levels: int) -> Any:
    value: Any = 1
    for _ in range(levels):
        value = [value]
    return value


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ({"name": "Zo\ud83d"}, r"at input.name: a string with a lone surrogate \(\\ud83d\)"),
        ({"\udc00": 1}, "at input: a key holds a string with a lone surrogate"),
        (_deep(129), r"at input(\[0\]){128}: nested deeper than 128 levels"),
        (_deep(300), "nested deeper than 128 levels"),
        (_deep(100_000), "nested deeper than 128 levels"),  # json.dumps alone would raise RecursionError
        ({"n": 2**64}, "at input.n: the integer 18446744073709551616 does not fit in 64 bits"),
        ({"n": -(2**63) - 1}, "does not fit in 64 bits"),
        ({"n": float("nan")}, "at input.n: nan is not a JSON number"),
    ],
)
def test_bad_input_is_refused_and_nothing_is_created(engine: cerebelum.Engine, registry, value: Any, message: str) -> None:
    registry.register("echo", lambda ctx: ctx.input)
    engine.create_workflow(definition("echo", {"a": fn("echo")}))
    with pytest.raises(InvalidInput, match=message):
        engine.execute("echo", value)
    with pytest.raises(InvalidInput):
        engine.run("echo", value)
    assert engine.executions() == []  # nothing committed; and listing still works


def test_accepted_edge_values_read_back_exactly(engine: cerebelum.Engine, registry) -> None:
    """The largest values that are accepted: 64-bit integers stay exact on
    SQLite as on PostgreSQL, 128 levels of nesting list and read fine."""
    registry.register("echo", lambda ctx: ctx.input)
    value = {"max": INT64_MAX, "min": -(2**63), "deep": _deep(126), "emoji": "Zo\U0001f600", "half": 0.5}
    execution = engine.run(definition("echo", {"a": fn("echo")}), value)
    assert execution.status == "completed", execution.error
    assert execution.output == value and execution.input == value
    assert type(execution.output["max"]) is int
    [row] = engine.executions()
    assert row.id == execution.id and engine.status(execution.id).output == value
    check_log(engine, execution)


@pytest.mark.parametrize(
    ("output", "message"),
    [
        ({"text": "a\udfffb"}, "at text: a string with a lone surrogate"),
        ({"deep": _deep(200)}, "nested deeper than 128 levels"),
        ({"n": 2**70}, "at n: the integer 1180591620717411303424 does not fit in 64 bits"),
    ],
)
def test_a_bad_handler_output_fails_its_attempt_located(engine: cerebelum.Engine, registry, output: Any, message: str) -> None:
    registry.register("bad", lambda ctx: output)
    execution = engine.run(definition("bad", {"a": fn("bad")}))
    assert execution.status == "failed"
    assert execution.error["kind"] == "invalid_output" and execution.error["node"] == "a"
    assert message in execution.error["message"]
    check_log(engine, execution)
    assert [row.id for row in engine.executions()] == [execution.id]  # the list still answers


def test_a_definition_with_a_lone_surrogate_or_a_huge_integer_is_refused_located(engine: cerebelum.Engine) -> None:
    with pytest.raises(cerebelum.ValidationError) as caught:
        engine.create_workflow(definition("s", {"a": fn("x")}, description="Zo\ud83d"))
    assert [p.location for p in caught.value.problems] == ["description"]
    assert "lone surrogate" in caught.value.problems[0].message
    with pytest.raises(cerebelum.ValidationError) as caught:
        engine.create_workflow(definition("i", {"a": fn("x")}, metadata={"n": 2**64}))
    assert [p.location for p in caught.value.problems] == ["metadata.n"]
    assert engine.workflows() == []


def test_an_expression_result_beyond_64_bits_is_an_expression_error() -> None:
    with pytest.raises(ExpressionError, match="beyond 64 bits"):
        CelCompiler().compile("18446744073709551615u").evaluate({})
    assert CelCompiler().compile("9223372036854775807").evaluate({}) == INT64_MAX
