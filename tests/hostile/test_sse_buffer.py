"""SSE clients that do not read (issue 18): a stream holds a bounded number of
events for its client, and one that falls too far behind is cut off (it
resumes with Last-Event-ID), so memory does not grow with slow readers."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime

from cerebelum.domain.events import Event
from cerebelum.entrypoints.http import app as http_app

T0 = datetime(2026, 1, 1, tzinfo=UTC)


class Busy:
    """An engine whose execution appends events faster than anyone reads them."""

    def __init__(self, total: int) -> None:
        self.total = total
        self.pulled = 0

    async def follow_async(self, execution_id: str, start: int = 0) -> AsyncIterator[Event]:
        for sequence in range(start, self.total):
            self.pulled += 1
            yield Event(f"e{sequence}", execution_id, sequence, "node_started", None, {"pad": "x" * 100}, T0)
            await asyncio.sleep(0)


async def test_a_stream_whose_client_does_not_read_holds_a_bounded_number_of_events(monkeypatch) -> None:
    monkeypatch.setattr(http_app, "SSE_SLOW_READER_S", 0.5)
    engine = Busy(total=100_000)
    stream = http_app._sse(engine, "x", 0, keepalive=0.2)  # type: ignore[arg-type]
    first = await anext(stream)
    assert first.startswith("id: 0\n")
    await asyncio.sleep(1.0)  # the client reads nothing for a while
    assert engine.pulled <= http_app.SSE_BUFFER + 2  # not 100,000 events queued for it
    rest = [chunk async for chunk in stream]  # it reads again: what was held, then the end (cut off)
    ids = [int(chunk.split("\n", 1)[0][4:]) for chunk in rest if chunk.startswith("id: ")]
    assert ids == list(range(1, len(ids) + 1)) and len(ids) <= http_app.SSE_BUFFER + 1
    assert engine.pulled < engine.total  # the stream ended early; the client resumes with Last-Event-ID


async def test_a_client_that_keeps_up_gets_every_event() -> None:
    engine = Busy(total=2_000)
    chunks = [chunk async for chunk in http_app._sse(engine, "x", 0, keepalive=5)]  # type: ignore[arg-type]
    assert [int(c.split("\n", 1)[0][4:]) for c in chunks] == list(range(2_000))
