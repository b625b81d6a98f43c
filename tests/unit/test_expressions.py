"""The CEL adapter, exercised only through CelCompiler (the ExpressionCompiler port)."""

from __future__ import annotations

import threading
from typing import Any

import pytest

from cerebelum.domain.errors import ExpressionError
from cerebelum.domain.validation import validate_document
from cerebelum.infrastructure.expressions import CelCompiler

ACT: dict[str, Any] = {
    "input": {"name": "order-42", "x": 2, "when": "2026-01-01T00:00:00Z"},
    "results": {
        "validate": {"total": 1500, "items": [{"sku": "a", "qty": 2}, {"sku": "b", "qty": 1}]},
        "ship": ["box-1", "box-2"],
        "charge": True,
        "a": {},
    },
    "data": {"approved": True, "score": 0.75, "count": 3},
    "item": {"sku": "a", "qty": 2},
    "index": 0,
}


def ev(source: str, activation: dict[str, Any] = ACT) -> Any:
    return CelCompiler().compile(source).evaluate(activation)


def with_data(**values: Any) -> dict[str, Any]:
    return {**ACT, "data": {**ACT["data"], **values}}


def same(a: Any, b: Any) -> bool:
    """Equality that also checks types, so True != 1 and 2 != 2.0."""
    if type(a) is not type(b):
        return False
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    if isinstance(a, list):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    return bool(a == b)


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("results.validate.total > 1000", True),
        ("data.approved", True),
        ("has(data.approved) && data.approved", True),
        ("has(data.nope) && data.nope", False),
        ("size(results.ship)", 2),
        ("results.validate.items", [{"sku": "a", "qty": 2}, {"sku": "b", "qty": 1}]),
        ("{'charged': results.charge, 'shipped': size(results.ship)}", {"charged": True, "shipped": 2}),
        ("item.qty * 2", 4),
        ("index == 0", True),
        ("results.ship[index]", "box-1"),
        ("input.name + '-x'", "order-42-x"),
        ("input.x in [1,2,3]", True),
        ("data.score >= 0.5", True),
        ("data.score * 2.0", 1.5),
        ("[1, 2].map(x, x * 10)", [10, 20]),
        ("null", None),
    ],
)
def test_typical_expressions_return_plain_json(source: str, expected: Any) -> None:
    assert same(ev(source), expected)


@pytest.mark.parametrize(("score", "expected"), [(1, True), (0, False), (0.5, True), (0.49, False)])
def test_int_and_double_compare_across_types(score: Any, expected: bool) -> None:
    assert ev("data.score >= 0.5", with_data(score=score)) is expected


def test_int_equals_double() -> None:
    assert ev("data.score == 1.0", with_data(score=1)) is True
    assert ev("input.x in [1.0, 2.0]") is True


def test_mixed_int_double_arithmetic_is_an_error_but_conversion_works() -> None:
    with pytest.raises(ExpressionError):
        ev("data.score + 0.5", with_data(score=1))
    assert same(ev("double(data.score) + 0.5", with_data(score=1)), 1.5)


def test_timestamps_come_back_as_rfc3339_utc() -> None:
    assert ev("timestamp('2026-01-01T00:00:00Z')") == "2026-01-01T00:00:00Z"
    assert ev("timestamp(input.when) + duration('90m')") == "2026-01-01T01:30:00Z"
    assert ev("timestamp('2026-01-01T02:00:00+02:00')") == "2026-01-01T00:00:00Z"
    assert ev("timestamp('2026-01-01T00:00:00.5Z')") == "2026-01-01T00:00:00.500000Z"


def test_string_of_timestamp_is_rfc3339() -> None:
    text = ev("string(timestamp('2026-01-01T00:00:00Z'))")
    assert isinstance(text, str) and text.startswith("2026-01-01T00:00:00")


def test_durations_are_seconds_and_bytes_are_text() -> None:
    assert same(ev("duration('1.5s')"), 1.5)
    assert ev("b'abc'") == "abc"
    with pytest.raises(ExpressionError, match="UTF-8"):
        ev("b'\\xff'")


def test_non_string_map_keys_are_named_like_json() -> None:
    assert ev("{1: 'a', 2: 'b'}") == {"1": "a", "2": "b"}
    assert ev("{true: 'b'}") == {"true": "b"}


@pytest.mark.parametrize(
    ("source", "needle"),
    [
        ("results.a.b.c", "no such key 'b'"),
        ("results.nope", "no such key 'nope'"),
        ("nope.x", "nope"),
        ("data.count + 'x'", "overload"),
        ("results.ship[5]", "out of bounds"),
        ("1 / 0", "division by zero"),
        ("timestamp('bad')", "timestamp"),
    ],
)
def test_runtime_failures_raise_one_line_expression_error(source: str, needle: str) -> None:
    compiled = CelCompiler().compile(source)
    with pytest.raises(ExpressionError) as info:
        compiled.evaluate(ACT)
    message = str(info.value)
    assert needle in message and source in message and "\n" not in message


@pytest.mark.parametrize("source", ["1 +", "a.b(", "{'a': }", ""])
def test_syntax_errors_fail_at_compile_time(source: str) -> None:
    with pytest.raises(ExpressionError) as info:
        CelCompiler().compile(source)
    assert "\n" not in str(info.value)


def test_compiled_expression_keeps_its_source() -> None:
    assert CelCompiler().compile("index == 0").source == "index == 0"


def test_unreferenced_variables_may_hold_anything() -> None:
    assert ev("index == 0", {"index": 0, "other": object()}) is True


def test_concurrent_evaluation_from_threads() -> None:
    compiled = CelCompiler().compile("item.qty * 2")
    wrong: list[Any] = []

    def work(k: int) -> None:
        for _ in range(200):
            got = compiled.evaluate({"item": {"qty": k}})
            if got != 2 * k:
                wrong.append(got)

    threads = [threading.Thread(target=work, args=(k,)) for k in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert wrong == []


@pytest.mark.parametrize(
    ("source", "position", "what"),
    [
        ("1 +", "column 4", "unexpected end of the expression, expected a value"),
        ("a && (b", "column 8", "missing ')' before the end of the expression"),
        ("data.items.exists(i, i.qty > )", "column 30", "unexpected ')', expected a value"),
        ("x ==  = 2", "column 7", "unexpected character '='"),
        ("1 +\n 2 +", "line 2 column 5", "unexpected end of the expression, expected a value"),
    ],
)
def test_a_syntax_error_is_one_clean_line_with_its_position(source: str, position: str, what: str) -> None:
    with pytest.raises(ExpressionError) as caught:
        CelCompiler().compile(source)
    message = str(caught.value)
    assert message == f"invalid expression {source!r}: syntax error at {position}: {what}"
    assert "\n" not in message and "<input>" not in message and "ERROR" not in message and "expecting {" not in message
    doc = {"name": "n", "entrypoint": "a", "nodes": {"a": {"type": "function", "config": {"handler": "h", "input": source}}}}
    (problem,) = validate_document(doc, CelCompiler())
    assert str(problem) == f"nodes.a.config.input: {message}"  # "invalid expression" once, the source once
