"""The one check of input and output values, the same on every backend.

A value stored in an event or an execution row must be plain JSON that
SQLite, PostgreSQL and the in-memory store all keep identically: no NaN or
infinity, no NUL (PostgreSQL's JSON refuses it), no lone surrogate (not
UTF-8: SQLite and the HTTP answers cannot encode it), no integer beyond 64
bits (SQLite would turn it into a float), and nested at most
`max_value_depth` levels. The check is iterative, so a deep value cannot
exhaust the stack, and it runs before anything is committed.
"""

from __future__ import annotations

import math
from typing import Any

from cerebelum.domain.limits import INT64_MAX, INT64_MIN


def value_problem(value: Any, max_depth: int, where: str = "") -> str | None:
    """None when `value` is storable JSON, else a one-line problem naming its location."""
    found = locate_value_problem(value, max_depth, where)
    if found is None:
        return None
    path, message = found
    return f"at {path}: {message}" if path else message


def locate_value_problem(value: Any, max_depth: int, where: str = "") -> tuple[str, str] | None:
    """None when `value` is storable JSON, else (its location, the problem)."""
    stack: list[tuple[Any, str, int]] = [(value, where, 0)]
    while stack:
        item, path, depth = stack.pop()
        if isinstance(item, str):
            problem = _string_problem(item)
            if problem is not None:
                return path, problem
        elif isinstance(item, bool) or item is None:
            continue
        elif isinstance(item, int):
            if not INT64_MIN <= item <= INT64_MAX:
                return path, f"the integer {_short(item)} does not fit in 64 bits (use a string for it)"
        elif isinstance(item, float):
            if not math.isfinite(item):
                return path, f"{item!r} is not a JSON number"
        elif isinstance(item, (dict, list, tuple)):
            if depth >= max_depth:
                return path, f"nested deeper than {max_depth} levels"
            if isinstance(item, dict):
                for key, child in item.items():
                    if not isinstance(key, str):
                        return path, f"the key {key!r} is not a string"
                    problem = _string_problem(key)
                    if problem is not None:
                        return path, f"a key holds {problem}"
                    stack.append((child, f"{path}.{key}" if path else key, depth + 1))
            else:
                for index, child in enumerate(item):
                    stack.append((child, f"{path}[{index}]", depth + 1))
        else:
            return path, f"a {type(item).__name__}, which is not JSON"
    return None


def _short(number: int) -> str:
    text = str(number)
    return text if len(text) <= 30 else f"{text[:12]}...{text[-6:]} ({len(text)} digits)"


def _string_problem(text: str) -> str | None:
    if "\x00" in text:
        return "a string with a NUL character (\\u0000), which PostgreSQL's JSON cannot store"
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        code = ord(text[exc.start])
        return f"a string with a lone surrogate (\\u{code:04x}), which is not valid Unicode"
    return None
