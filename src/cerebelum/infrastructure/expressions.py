"""CEL adapter over ``common-expression-language`` (module ``cel``, Rust cel-interpreter).

Chosen over ``cel-python`` because it passed the whole checklist in
bench/cel_candidates.py, compiles ~15x and evaluates ~5-10x faster, and reports
clearer errors.

Numbers: activation values go in unchanged (JSON ints stay CEL ``int``, floats
stay ``double``). The library implements cel-spec's cross-type numeric
*comparison*, so ``data.score >= 0.5`` and ``data.score == 1.0`` work when score
is ``1``. Arithmetic stays strict as CEL requires (``1 + 0.5`` is an error; write
``double(x) + 0.5``). We do not coerce ints to doubles on the way in: that would
break list indexing (``results.ship[index]``), turn integer results such as
``item.qty * 2`` into floats, and make ``x * 2`` fail. Caveat: a JSON integer
beyond int64 is silently turned into a double by the library.

Threads: ``cel.Program.execute`` takes ``&self`` and the program is immutable
after compilation; each call builds its own context, so one ``CelExpression``
may be evaluated from many threads at once without a lock.

Cost bound (docs/limits.md): the library has no cost limit and holds the GIL
while it evaluates, so an expression is evaluated in this process only when
its cost is linear in its data by construction ("plain": no comprehension
macro, no regex, a few concatenations, short). Any other expression runs in
a sandbox process (``cel_sandbox``) that the kernel stops once it has used
its CPU budget, and whose memory is capped; exceeding either is an
``ExpressionLimit``. Static limits (length, nesting of macros and brackets)
are checked at compile time, so validation reports them, located.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import cel

from cerebelum.domain.errors import ExpressionError, ExpressionLimit
from cerebelum.domain.limits import Limits, configured
from cerebelum.infrastructure.cel_child import NotJson, describe, to_json

__all__ = ["CelCompiler", "CelExpression", "is_plain"]

MACROS = ("map", "filter", "all", "exists", "exists_one")
# Conservative on purpose: also matches inside string literals and across
# comments, so that no macro call can be evaluated in-process by mistake.
_MACRO_CALL = re.compile(r"\b(?:map|filter|all|exists|exists_one|matches)(?:\s|//[^\n]*)*\(")
PLAIN_MAX_LENGTH = 512
PLAIN_MAX_CONCATENATIONS = 8
MAX_BRACKET_DEPTH = 64


class CelExpression:
    """One compiled expression; immutable, so safe to share across threads."""

    __slots__ = ("_limits", "_names", "_program", "plain", "source")

    def __init__(self, source: str, program: cel.Program, limits: Limits | None = None) -> None:
        self.source = source
        self._program = program
        self._limits = limits or configured()
        # Only the referenced variables are handed to the library, because it
        # converts every variable it receives into CEL values on each call.
        self._names = frozenset(program.variables())
        self.plain = is_plain(source)

    def evaluate(self, activation: Mapping[str, Any]) -> Any:
        """Evaluate against JSON-ish variables; return a plain JSON Python value."""
        context = {name: value for name, value in activation.items() if name in self._names}
        if not self.plain:
            from cerebelum.infrastructure.cel_sandbox import evaluate_in_sandbox

            return evaluate_in_sandbox(self.source, context, self._limits)
        try:
            result = self._program.execute(context)
        except Exception as exc:  # the library raises KeyError/TypeError/RuntimeError/...
            raise ExpressionError(f"cannot evaluate {self.source!r}: {_describe(exc)}") from exc
        return _to_json(result, self.source)

    def __repr__(self) -> str:
        return f"CelExpression({self.source!r})"


class CelCompiler:
    """Parses CEL once so that evaluation only walks the compiled program."""

    def __init__(self, limits: Limits | None = None) -> None:
        self.limits = limits

    def compile(self, source: str) -> CelExpression:
        limits = self.limits or configured()
        check_static_limits(source, limits)
        try:
            program = cel.compile(source)
        except Exception as exc:
            raise ExpressionError(f"invalid expression {source!r}: {_syntax(exc, source)}") from exc
        expression = CelExpression(source, program, limits)
        if not expression.plain:
            from cerebelum.infrastructure.cel_sandbox import warm_up

            warm_up(limits)  # start a sandbox process now, not on the first evaluation
        return expression


def is_plain(source: str) -> bool:
    """Whether evaluating `source` costs at most a few passes over its data:
    no comprehension macro and no regex (conservatively: no such name followed
    by a parenthesis anywhere), at most a few `+`, and short."""
    return (
        len(source) <= PLAIN_MAX_LENGTH
        and source.count("+") <= PLAIN_MAX_CONCATENATIONS
        and _MACRO_CALL.search(source) is None
    )


def check_static_limits(source: str, limits: Limits) -> None:
    """Raise ExpressionLimit when `source` is longer, or nests comprehension
    macros or brackets deeper, than the limits allow."""
    if len(source) > limits.max_expression_length:
        raise ExpressionLimit(
            f"the expression is {len(source)} characters long, more than the limit of {limits.max_expression_length}"
        )
    macros, brackets = nesting(source)
    if macros > limits.max_comprehension_depth:
        raise ExpressionLimit(
            f"comprehension macros ({', '.join(MACROS)}) are nested {macros} deep in {_clip(source)}, "
            f"more than the limit of {limits.max_comprehension_depth}"
        )
    if brackets > MAX_BRACKET_DEPTH:
        raise ExpressionLimit(f"brackets are nested {brackets} deep, more than the limit of {MAX_BRACKET_DEPTH}")


_TOKEN = re.compile(r"[A-Za-z_][A-Za-z_0-9]*|//[^\n]*|\S")


def nesting(source: str) -> tuple[int, int]:
    """(deepest nesting of macro calls, deepest nesting of brackets), string
    literals skipped (a bracket or a name inside a string does not count)."""
    stack: list[bool] = []  # one entry per open bracket: does it open a macro call?
    macros = brackets = 0
    pending_macro = False
    i, n = 0, len(source)
    while i < n:
        match = _TOKEN.match(source, i)
        if match is None:  # whitespace
            i += 1
            continue
        token = match.group()
        prefix = token.lower() in ("r", "b", "rb", "br") and source[match.end() : match.end() + 1] in ("'", '"')
        if token in ("'", '"') or prefix:
            i = _skip_string(source, match.start())
            pending_macro = False
            continue
        i = match.end()
        if token.startswith("//"):
            continue
        if token in ("(", "[", "{"):
            stack.append(pending_macro and token == "(")
            brackets = max(brackets, len(stack))
            macros = max(macros, sum(stack))
        elif token in (")", "]", "}") and stack:
            stack.pop()
        pending_macro = token in MACROS
    return macros, brackets


def _skip_string(source: str, start: int) -> int:
    """The index after the string literal that starts at `start` (prefix included)."""
    i = start
    raw = False
    while source[i] not in ("'", '"'):
        raw = raw or source[i] in "rR"
        i += 1
    quote = source[i] * 3 if source.startswith(source[i] * 3, i) else source[i]
    i += len(quote)
    while i < len(source):
        if not raw and source[i] == "\\":
            i += 2
            continue
        if source.startswith(quote, i):
            return i + len(quote)
        i += 1
    return len(source)


def _clip(source: str, width: int = 80) -> str:
    return repr(source) if len(source) <= width else repr(source[: width - 3] + "...")


# The parser's text: "Failed to parse expression '<src>': ERROR: <input>:L:C: Syntax error: <what>\n| <src>\n| ...^"
_PARSE_ERROR = re.compile(r"<input>:(\d+):(\d+): (?:Syntax error: )?(.*)")
_EXPECTING = re.compile(r"^(mismatched|extraneous) input '(.*)' expecting (.*)$")


def _token(text: str) -> str:
    return "end of the expression" if text == "<EOF>" else repr(text)


def _syntax(exc: Exception, source: str) -> str:
    """The parser's error as one line with its position (no source echo, no caret drawing)."""
    found = _PARSE_ERROR.search(str(exc))  # the source may span lines: search the whole text
    if found is None:
        return _describe(exc)
    line, column, what = int(found[1]), int(found[2]), found[3].strip()
    expecting = _EXPECTING.match(what)
    if expecting is not None:
        wanted = expecting[3]
        value = any(word in wanted for word in ("IDENTIFIER", "NUM_INT", "STRING"))
        expected = "a value" if value else "the end of the expression" if wanted == "<EOF>" else f"one of {wanted}"
        what = f"unexpected {_token(expecting[2])}, expected {expected}"
    elif what.startswith("missing "):
        what = re.sub(r" at '(.*)'$", lambda m: f" before the {_token(m[1])}" if m[1] == "<EOF>" else f" at {m[1]!r}", what)
    elif what.startswith("token recognition error at: "):
        what = f"unexpected character {what.rsplit(': ', 1)[-1].strip().strip(chr(39))[:1]!r}"
    where = f"line {line} column {column}" if "\n" in source else f"column {column}"
    return f"syntax error at {where}: {what}"


def _describe(exc: Exception) -> str:
    return describe(exc)


def _to_json(value: Any, source: str) -> Any:
    """CEL result -> dict/list/str/int/float/bool/None, so callers can store it as JSON."""
    try:
        return to_json(value, source)
    except NotJson as exc:
        raise ExpressionError(str(exc)) from None
