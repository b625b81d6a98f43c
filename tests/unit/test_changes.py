"""The change feed and its followers: events in hand need no read; another
process's notice, a gap, an overflow or a quiet poll make the follower read
the log; our own NOTIFY echoes are dropped (application/changes.py)."""

from __future__ import annotations

import asyncio
import threading
from datetime import UTC, datetime

import pytest

from cerebelum.application.changes import ALL, QUEUE, ChangeFeed, follow, wait_until_ended
from cerebelum.domain.errors import NotFound
from cerebelum.domain.events import Event
from cerebelum.domain.execution import Execution

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def event(sequence: int, kind: str = "node_started", execution_id: str = "x") -> Event:
    return Event(f"e{sequence}", execution_id, sequence, kind, None, {}, T0)


class Log:
    """A fake of the store's reads, counting them."""

    def __init__(self, events: list[Event], status: str = "running") -> None:
        self.events = events
        self.status = status
        self.reads = 0

    async def read_events(self, execution_id: str, start: int) -> list[Event]:
        self.reads += 1
        return [e for e in self.events if e.sequence >= start]

    async def read_execution(self, execution_id: str) -> Execution:
        if execution_id != "x":
            raise NotFound(f"unknown execution '{execution_id}'")
        last = self.events[-1].sequence if self.events else -1
        return Execution("x", "w", 1, self.status, {}, 0, False, T0, last_sequence=last)


class Silent:
    """A listener that never hears anything but says it is connected (long polls)."""

    def __init__(self, *_: object) -> None:
        self.connected = threading.Event()
        self.connected.set()

    def start(self) -> None: ...

    def stop(self) -> None: ...


async def collect(feed: ChangeFeed, log: Log, start: int = 0, buffer: int = 1024) -> list[int]:
    return [e.sequence async for e in follow(feed, log.read_events, log.read_execution, "x", start, buffer)]


async def settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


async def test_events_in_hand_are_delivered_without_reading_the_log() -> None:
    feed = ChangeFeed("me", Silent)
    log = Log([event(0, "execution_started")])
    task = asyncio.ensure_future(collect(feed, log))
    await settle()
    assert log.reads == 1  # the resume read
    for sequence in range(1, 50):
        feed.publish(event(sequence))
    feed.publish(event(50, "execution_completed"))
    assert await asyncio.wait_for(task, 5) == list(range(51))
    assert log.reads == 1


async def test_a_notice_from_another_process_makes_the_follower_read_but_our_echo_does_not() -> None:
    feed = ChangeFeed("me", Silent)
    log = Log([event(0, "execution_started")])
    task = asyncio.ensure_future(collect(feed, log))
    await settle()
    log.events.append(event(1))
    feed.touch("x", "me")  # the echo of an append this process published already
    await settle()
    assert log.reads == 1
    feed.touch("x", "another-worker")
    await settle()
    assert log.reads == 2
    log.events.append(event(2, "execution_failed"))
    feed.touch("x", None)
    assert await asyncio.wait_for(task, 5) == [0, 1, 2]


async def test_a_gap_in_hand_is_filled_from_the_log_and_nothing_is_repeated() -> None:
    feed = ChangeFeed("me", Silent)
    log = Log([event(0, "execution_started")])
    task = asyncio.ensure_future(collect(feed, log))
    await settle()
    log.events += [event(1), event(2), event(3, "execution_completed")]
    feed.publish(event(2))  # 1 was appended elsewhere and never handed over
    feed.publish(event(3, "execution_completed"))
    assert await asyncio.wait_for(task, 5) == [0, 1, 2, 3]
    assert log.reads == 2


async def test_a_follower_that_does_not_keep_up_holds_at_most_its_buffer() -> None:
    feed = ChangeFeed("me", Silent)
    log = Log([event(0, "execution_started")])
    stream = follow(feed, log.read_events, log.read_execution, "x", 0, 8)
    assert (await anext(stream)).sequence == 0  # then the reader stops reading
    for sequence in range(1, 200):
        event_ = event(sequence)
        log.events.append(event_)
        feed.publish(event_)
    await settle()
    log.events.append(event(200, "execution_completed"))
    feed.publish(log.events[-1])
    rest = [e.sequence async for e in stream]
    assert rest == list(range(1, 201))
    assert log.reads == 2  # the overflow made it read the log once, not hold 200 events


async def test_start_past_a_terminal_log_ends_at_once_and_unknown_ids_raise() -> None:
    feed = ChangeFeed("me", Silent)
    log = Log([event(0, "execution_started"), event(1, "execution_completed")], status="completed")
    assert await asyncio.wait_for(collect(feed, log, start=5), 5) == []
    with pytest.raises(NotFound):
        [e async for e in follow(feed, log.read_events, log.read_execution, "nope", 0)]


async def test_sqlite_polls_only_when_this_process_is_not_appending() -> None:
    feed = ChangeFeed("me")  # no listener: poll every 0.25 s
    log = Log([event(0, "execution_started")])
    task = asyncio.ensure_future(collect(feed, log))
    await asyncio.sleep(0.6)
    polled = log.reads
    assert polled >= 2  # the resume read, then at least one quiet poll
    log.events.append(event(1, "execution_completed"))  # written by another process
    assert await asyncio.wait_for(task, 5) == [0, 1]


async def test_wait_until_ended_wakes_on_a_terminal_event_in_hand() -> None:
    feed = ChangeFeed("me", Silent)
    log = Log([event(0, "execution_started")])
    task = asyncio.ensure_future(wait_until_ended(feed, log.read_execution, "x"))
    await settle()
    log.status = "completed"
    feed.publish(event(1, "node_started"))
    await settle()
    assert not task.done()
    feed.publish(event(2, "execution_completed"))
    assert (await asyncio.wait_for(task, 5)).status == "completed"


def test_subscribers_get_events_only_and_watchers_of_the_queue_get_notices() -> None:
    feed = ChangeFeed("me")
    seen: list[object] = []
    woken: list[object] = []
    unsubscribe = feed.subscribe(seen.append)
    feed.watch(woken.append, QUEUE)
    feed.publish(event(0))
    feed.touch("x", "other")
    feed.touch(QUEUE)
    unsubscribe()
    feed.publish(event(1))
    assert [e.sequence for e in seen] == [0]  # type: ignore[attr-defined]
    assert woken == [None]
    assert ALL != QUEUE


async def test_a_follower_starting_past_a_running_log_ends_with_its_terminal_event() -> None:
    feed = ChangeFeed("me", Silent)
    log = Log([event(0, "execution_started")])
    task = asyncio.ensure_future(collect(feed, log, start=5))
    await settle()
    feed.publish(event(1, "execution_completed"))
    assert await asyncio.wait_for(task, 5) == []


def test_one_subscriber_that_raises_does_not_keep_the_event_from_the_others() -> None:
    feed = ChangeFeed("me")
    seen: list[int] = []

    def broken(_: Event) -> None:
        raise ValueError("subscriber bug")

    feed.subscribe(broken)
    feed.subscribe(lambda e: seen.append(e.sequence))
    feed.publish(event(0))  # does not raise into the publishing runner
    assert seen == [0]
