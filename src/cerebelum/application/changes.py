"""The change feed: how a change to an execution reaches whoever waits on it.

One registry for everything that listens in this process: subscribers that
want each appended event (the CLI's progress view, metrics, tracing), the
followers behind `wait`, `events --follow` and the SSE stream, and the
worker pool waiting for claimable work. Events appended by this process are
published with the event in hand, so a follower reads nothing back; other
processes' appends arrive as bare notices (`touch`, from LISTEN/NOTIFY on
PostgreSQL), and only those, a gap, or a quiet poll interval (SQLite, where
nothing notifies) make a follower read the database.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Protocol

from cerebelum.domain.events import Event, EventType
from cerebelum.domain.execution import Execution, ExecutionStatus

log = logging.getLogger("cerebelum.changes")
Watcher = Callable[[Event | None], None]  # an event in hand, or None: "changed, read it"
ALL = "*"  # key of the watchers of every execution's events
QUEUE = "queue"  # key of the watchers of claimable work
TERMINAL = frozenset({EventType.EXECUTION_COMPLETED, EventType.EXECUTION_FAILED})
FOLLOW_BUFFER = 1024  # events held for a follower that does not keep up; past it, it reads the log again


class ChangeListener(Protocol):
    """Other processes' changes (PostgreSQL LISTEN); built by the composition root."""

    connected: threading.Event

    def start(self) -> None: ...

    def stop(self) -> None: ...


# (on_events(execution_id, origin), on_queue) -> a listener; `origin` is the appending lease's owner
ListenerFactory = Callable[[Callable[[str, str | None], None], Callable[[], None]], ChangeListener]


class ChangeFeed:
    """Publish/subscribe by execution id, thread-safe. Watchers run on the
    thread that publishes and must be quick (hand work to a loop)."""

    def __init__(self, origin: str | None = None, listener: ListenerFactory | None = None) -> None:
        self.origin = origin  # the lease owner of this process's appends: their notices are echoes
        self._lock = threading.Lock()
        self._watchers: dict[str, list[Watcher]] = {}
        self._make_listener = listener
        self._listener: ChangeListener | None = None

    def watch(self, watcher: Watcher, key: str) -> Callable[[], None]:
        """Call `watcher` on every change of `key` (an execution id, ALL or QUEUE); returns unwatch."""
        with self._lock:
            self._watchers.setdefault(key, []).append(watcher)

        def unwatch() -> None:
            with self._lock:
                watchers = self._watchers.get(key, [])
                if watcher in watchers:
                    watchers.remove(watcher)
                if not watchers:
                    self._watchers.pop(key, None)

        return unwatch

    def subscribe(self, subscriber: Callable[[Event], None], execution_id: str | None = None) -> Callable[[], None]:
        """Every event this process appends (to `execution_id`, or to all), in hand."""

        def on_change(event: Event | None) -> None:
            if event is not None:
                subscriber(event)

        return self.watch(on_change, ALL if execution_id is None else execution_id)

    def publish(self, event: Event) -> None:
        """An event this process has committed."""
        self._call(event.execution_id, event)
        self._call(ALL, event)

    def touch(self, key: str, origin: str | None = None) -> None:
        """Something changed that this process does not hold (another process's
        append, released work). The echo of our own append is dropped: it was
        published with the event in hand."""
        if origin is None or origin != self.origin:
            self._call(key, None)

    def _call(self, key: str, event: Event | None) -> None:
        with self._lock:
            targets = tuple(self._watchers.get(key, ()))
        for watcher in targets:
            try:
                watcher(event)
            except Exception:  # one subscriber's bug must not stall the runner that published, nor the others
                log.exception("a change-feed subscriber raised")

    def listen(self) -> float:
        """Start hearing other processes (once; PostgreSQL only). Returns how often
        a follower should still poll: rarely when notices arrive, else often."""
        if self._make_listener is None:
            return 0.25
        with self._lock:
            if self._listener is None:
                self._listener = self._make_listener(self.touch, lambda: self.touch(QUEUE))
                self._listener.start()
            listener = self._listener
        return 5.0 if listener.connected.is_set() else 0.25

    def close(self) -> None:
        if self._listener is not None:
            self._listener.stop()


def waker(loop: asyncio.AbstractEventLoop, callback: Callable[[], object]) -> Watcher:
    """A watcher that runs `callback` in `loop` (from any thread); quiet once the loop is closed."""

    def wake(_: Event | None) -> None:
        with contextlib.suppress(RuntimeError):  # the loop is closed: nobody is waiting
            loop.call_soon_threadsafe(callback)

    return wake


ReadEvents = Callable[[str, int], Awaitable[list[Event]]]
ReadExecution = Callable[[str], Awaitable[Execution]]


class _Inbox:
    """What a follower was handed since it last looked, bounded: events in hand,
    and whether it must read the log (a notice from elsewhere, or an overflow)."""

    def __init__(self, limit: int) -> None:
        self.loop = asyncio.get_running_loop()
        self.thread = threading.get_ident()
        self.limit = limit
        self.events: deque[Event] = deque()
        self.stale = False
        self.local_at = 0.0  # when this process last appended to the execution
        self.changed = asyncio.Event()

    def __call__(self, event: Event | None) -> None:
        if threading.get_ident() == self.thread:
            self._take(event)
        else:
            with contextlib.suppress(RuntimeError):
                self.loop.call_soon_threadsafe(self._take, event)

    def _take(self, event: Event | None) -> None:
        if event is None or len(self.events) >= self.limit:
            self.stale = True  # read the log from where we are; memory stays bounded
        else:
            self.events.append(event)
            self.local_at = time.monotonic()
        self.changed.set()

    async def wait(self, feed: ChangeFeed) -> float:
        """Until something is handed over, or a poll interval (asked each time: the
        listener may connect or drop meanwhile) passes; returns that interval."""
        poll = feed.listen()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.changed.wait(), poll)
        self.changed.clear()
        return poll


async def follow(
    feed: ChangeFeed,
    read_events: ReadEvents,
    read_execution: ReadExecution,
    execution_id: str,
    start: int = 0,
    buffer: int = FOLLOW_BUFFER,
) -> AsyncIterator[Event]:
    """Every event from `start` on, once each and in order, as it is committed,
    until the execution's terminal event. The log is read to resume, after a
    notice from another process, when the in-hand events skip a sequence or
    overflow `buffer`, and at a poll interval that passed without this process
    appending (another process may be running the execution)."""
    feed.listen()
    inbox = _Inbox(buffer)
    unwatch = feed.watch(inbox, execution_id)  # before reading: nothing falls between the two
    try:
        execution = await read_execution(execution_id)  # NotFound for an unknown id
        next_sequence = start
        stale = True
        while True:
            if stale:
                inbox.changed.clear()  # what woke us is in this read
                for event in await read_events(execution_id, next_sequence):
                    if event.sequence == next_sequence:
                        next_sequence += 1
                        yield event
                        if event.type in TERMINAL:
                            return
                if execution.is_terminal and next_sequence > execution.last_sequence:
                    return  # `start` lies past the terminal event
                stale = False
            while inbox.events:
                event = inbox.events.popleft()
                if event.sequence < next_sequence:
                    if event.type in TERMINAL:
                        return  # it ended before `start`
                    continue  # already read from the log
                if event.sequence > next_sequence:
                    stale = True  # a gap: the log has what we missed
                    inbox.events.appendleft(event)
                    break
                next_sequence += 1
                yield event
                if event.type in TERMINAL:
                    return
            if stale:
                continue
            if inbox.stale:
                inbox.stale, stale = False, True
                continue
            poll = await inbox.wait(feed)
            if not (inbox.changed.is_set() or inbox.events or inbox.stale):
                # a quiet interval: unless this process is the one appending, look at the log
                stale = time.monotonic() - inbox.local_at >= poll
    finally:
        unwatch()


async def wait_until_ended(
    feed: ChangeFeed, read_execution: ReadExecution, execution_id: str, stop_at_pause: bool = False
) -> Execution:
    """The execution once it is terminal (or paused, with `stop_at_pause`); the row
    is read at the start, on such an event of this process, on a notice from
    another, and at each poll."""
    feed.listen()
    inbox = _Inbox(FOLLOW_BUFFER)
    unwatch = feed.watch(inbox, execution_id)
    ending = TERMINAL | {EventType.EXECUTION_PAUSED} if stop_at_pause else TERMINAL
    try:
        while True:
            inbox.changed.clear()
            execution = await read_execution(execution_id)
            if execution.is_terminal or (stop_at_pause and execution.status == ExecutionStatus.PAUSED):
                return execution
            while True:
                poll = await inbox.wait(feed)
                ended = any(event.type in ending for event in inbox.events)
                inbox.events.clear()
                if ended or inbox.stale or time.monotonic() - inbox.local_at >= poll:
                    inbox.stale = False
                    break
    finally:
        unwatch()
