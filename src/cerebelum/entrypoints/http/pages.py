"""Bounded answers: pages of the event log and execution summaries in lists.

A log of 100,000 events or a list of executions with megabyte inputs must not
become one answer of hundreds of megabytes (interaction.md section 12): the
event log comes in pages (`limit` events, and no more than about
`EVENTS_PAGE_BYTES` of JSON, with `next_from` while more remain), and list
items leave out an `input` or `output` whose JSON is over
`SUMMARY_BODY_BYTES` (named in the item's `omitted`; the full body stays on
GET /executions/{id}).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from starlette.responses import JSONResponse

from cerebelum.domain.events import Event

EVENTS_DEFAULT_LIMIT = 1_000
EVENTS_MAX_LIMIT = 10_000
EVENTS_PAGE_BYTES = 8 * 1024 * 1024  # a page stops early past this (it always holds at least one event)
SUMMARY_BODY_BYTES = 4 * 1024
SUMMARY_FIELDS = ("input", "output")


def _encoded(value: Any) -> bytes:
    """JSON as the API's responses write it (UTF-8, compact); a lone surrogate is escaped, not a 500."""
    text = json.dumps(value, ensure_ascii=False, allow_nan=False, separators=(",", ":"))
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError:
        return json.dumps(value, ensure_ascii=True, allow_nan=False, separators=(",", ":")).encode("ascii")


def event_page(log: Sequence[Event], limit: int, max_bytes: int) -> bytes:
    """`{"items": [...], "next_from": N | null}` for `log`, read with one event more
    than `limit` (that extra event, when present, says that more remain)."""
    chunks: list[bytes] = []
    size = 0
    next_from: int | None = None
    for index, event in enumerate(log):
        if index >= limit:
            next_from = event.sequence
            break
        chunk = _encoded(event.to_json())
        if chunks and size + len(chunk) > max_bytes:
            next_from = event.sequence
            break
        chunks.append(chunk)
        size += len(chunk) + 1
    tail = b"null" if next_from is None else str(next_from).encode()
    return b'{"items":[' + b",".join(chunks) + b'],"next_from":' + tail + b"}"


def larger_than(value: Any, budget: int) -> bool:
    """Whether `value`'s JSON is (roughly) over `budget` bytes, without writing it:
    the walk stops as soon as the budget is spent, so a huge value costs no more
    than a small one. Strings count their characters (escapes aside)."""
    total = 0
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            total += len(item) + 2
        elif isinstance(item, dict):
            total += 2
            for key, child in item.items():
                total += len(str(key)) + 4
                if total > budget:
                    return True
                stack.append(child)
        elif isinstance(item, list | tuple):
            total += 2 + len(item)
            if total > budget:
                return True
            stack.extend(item)
        else:
            total += item.bit_length() // 3 + 1 if isinstance(item, int) else 8  # no str(): huge ints are slow
        if total > budget:
            return True
    return False


def summary(execution: dict[str, Any], max_bytes: int) -> dict[str, Any]:
    """An execution's JSON for a list: `input`/`output` over `max_bytes` become null
    and are named in `omitted`."""
    omitted = [key for key in SUMMARY_FIELDS if larger_than(execution.get(key), max_bytes)]
    return {**execution, **dict.fromkeys(omitted), "omitted": omitted}


class SafeJSONResponse(JSONResponse):
    """JSONResponse whose rendering cannot fail on a value the store accepted: a
    lone surrogate in a string (valid JSON text, not UTF-8) is written escaped
    instead of raising after the write was committed (a 500 after commit)."""

    def render(self, content: Any) -> bytes:
        return _encoded(content)
