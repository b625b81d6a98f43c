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
"""

from __future__ import annotations

import datetime as dt
import json
import re
from collections.abc import Mapping
from typing import Any

import cel

from cerebelum.domain.errors import ExpressionError

__all__ = ["CelCompiler", "CelExpression"]


class CelExpression:
    """One compiled expression; immutable, so safe to share across threads."""

    __slots__ = ("_names", "_program", "source")

    def __init__(self, source: str, program: cel.Program) -> None:
        self.source = source
        self._program = program
        # Only the referenced variables are handed to the library, because it
        # converts every variable it receives into CEL values on each call.
        self._names = frozenset(program.variables())

    def evaluate(self, activation: Mapping[str, Any]) -> Any:
        """Evaluate against JSON-ish variables; return a plain JSON Python value."""
        context = {name: value for name, value in activation.items() if name in self._names}
        try:
            result = self._program.execute(context)
        except Exception as exc:  # the library raises KeyError/TypeError/RuntimeError/...
            raise ExpressionError(f"cannot evaluate {self.source!r}: {_describe(exc)}") from exc
        return _to_json(result, self.source)

    def __repr__(self) -> str:
        return f"CelExpression({self.source!r})"


class CelCompiler:
    """Parses CEL once so that evaluation only walks the compiled program."""

    def compile(self, source: str) -> CelExpression:
        try:
            program = cel.compile(source)
        except Exception as exc:
            raise ExpressionError(f"invalid expression {source!r}: {_syntax(exc, source)}") from exc
        return CelExpression(source, program)


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
    """One line from the library's exception; its KeyError text is just the key."""
    if isinstance(exc, KeyError):
        return f"no such key {exc.args[0]!r}" if exc.args else "no such key"
    text = str(exc)
    if text.startswith("Failed to parse expression "):  # we already quote the source
        text = text.split(": ", 1)[-1]
    first = text.strip().splitlines()[0] if text.strip() else type(exc).__name__
    return first


def _to_json(value: Any, source: str) -> Any:
    """CEL result -> dict/list/str/int/float/bool/None, so callers can store it as JSON."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, dt.datetime):  # RFC 3339 in UTC with a 'Z'
        aware = value if value.tzinfo else value.replace(tzinfo=dt.UTC)
        return aware.astimezone(dt.UTC).isoformat().replace("+00:00", "Z")
    if isinstance(value, dt.timedelta):
        return value.total_seconds()
    if isinstance(value, bytes):
        try:
            return value.decode("utf-8")
        except UnicodeDecodeError:
            raise ExpressionError(f"{source!r} returned bytes that are not UTF-8") from None
    if isinstance(value, (list, tuple)):
        return [_to_json(item, source) for item in value]
    if isinstance(value, dict):  # CEL keys may be int/uint/bool: name them as json.dumps does
        # Sorted: the library's maps come back in random order, and a stable
        # order keeps event payloads byte-identical from one run to the next.
        named = {key if isinstance(key, str) else json.dumps(key): item for key, item in value.items()}
        return {key: _to_json(named[key], source) for key in sorted(named)}
    if isinstance(value, cel.OptionalValue):
        return _to_json(value.value(), source) if value.has_value() else None
    raise ExpressionError(f"{source!r} returned a {type(value).__name__}, which is not JSON")
