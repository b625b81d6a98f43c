"""In-process broker: the seed's subscribe/unsubscribe for events as they are appended."""

from __future__ import annotations

import threading
from collections.abc import Callable

from cerebelum.domain.events import Event

Subscriber = Callable[[Event], None]


class Broker:
    """Fan-out of appended events to subscribers of one execution or of all.

    Subscribers are called on the thread that appended; they must be quick
    and thread-safe (hand work to their own loop with call_soon_threadsafe).
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._subscribers: dict[str | None, list[Subscriber]] = {}

    def subscribe(self, subscriber: Subscriber, execution_id: str | None = None) -> Callable[[], None]:
        """Start delivering events (of `execution_id`, or of all); returns unsubscribe."""
        with self._lock:
            self._subscribers.setdefault(execution_id, []).append(subscriber)

        def unsubscribe() -> None:
            with self._lock:
                subscribers = self._subscribers.get(execution_id, [])
                if subscriber in subscribers:
                    subscribers.remove(subscriber)

        return unsubscribe

    def publish(self, event: Event) -> None:
        with self._lock:
            targets = [*self._subscribers.get(event.execution_id, ()), *self._subscribers.get(None, ())]
        for subscriber in targets:
            subscriber(event)


Waker = Callable[[], object]


class Wakeups:
    """Cheap "something changed" signals, per execution or for the queue, fed by
    this process's appends and by other processes' notifications."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._watchers: dict[str | None, list[Waker]] = {}

    def watch(self, waker: Waker, key: str | None) -> Callable[[], None]:
        with self._lock:
            self._watchers.setdefault(key, []).append(waker)

        def unwatch() -> None:
            with self._lock:
                watchers = self._watchers.get(key, [])
                if waker in watchers:
                    watchers.remove(waker)

        return unwatch

    def touch(self, key: str | None) -> None:
        with self._lock:
            targets = list(self._watchers.get(key, ()))
        for waker in targets:
            waker()
