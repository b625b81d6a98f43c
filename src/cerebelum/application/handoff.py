"""Running blocking calls (sync handlers, database calls) in a thread from the event loop.

`loop.run_in_executor` and `ThreadPoolExecutor` chain a concurrent future to
an asyncio one through several callbacks, locks and a semaphore; every step
crosses threads, so this hand-off does only what is needed: a queue of
calls for a few threads, and one `call_soon_threadsafe` with the outcome.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import queue
import threading
import weakref
from collections.abc import Callable
from typing import Any, Protocol, TypeVar

T = TypeVar("T")
_log = logging.getLogger(__name__)


class Pool(Protocol):
    """Runs a call in some thread (a `Threads`, or any `concurrent.futures.Executor`)."""

    def submit(self, fn: Callable[[], Any], /) -> Any: ...


class Threads:
    """Up to `size` threads taking calls from one queue; a thread is added only
    when every thread is busy (a blocking handler never holds up another).
    Calls are fire-and-forget: `in_thread` carries their outcome.

    A call given up on while it runs (a timed-out or cancelled sync handler:
    Python cannot stop its thread) is *abandoned*: its thread leaves the pool,
    which may start another in its place, and ends once the call returns. At
    most `max_abandoned` threads (default 4 x size) are out like this at once;
    past that an abandoned thread keeps its place (the pool shrinks rather than
    the process growing without bound). `abandoned` / `abandoned_total` are
    reported by /metrics (`pool_stats`)."""

    def __init__(self, size: int, name: str, max_abandoned: int | None = None) -> None:
        self.size = size
        self.name = name
        self.max_abandoned = 4 * size if max_abandoned is None else max_abandoned
        self._calls: queue.SimpleQueue[Callable[[], Any] | None] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._threads: list[threading.Thread] = []
        self._abandoned: set[threading.Thread] = set()  # out of the pool, still running a call nobody awaits
        self._running: dict[threading.Thread, Callable[[], Any]] = {}  # thread -> the call it runs now
        self._idle = 0  # threads waiting for a call
        self._queued = 0  # calls no thread has taken yet
        self._closed = False
        self._serial = 0
        self.abandoned_total = 0
        _POOLS.add(self)

    @property
    def abandoned(self) -> int:
        with self._lock:
            return len(self._abandoned)

    def submit(self, fn: Callable[[], Any], /) -> None:
        with self._lock:
            if self._closed:
                raise RuntimeError(f"{self.name} is shut down")
            self._queued += 1
            self._grow()
        self._calls.put(fn)

    def _grow(self) -> None:
        """With the lock held: a thread more if every thread is busy and the pool has room."""
        if self._queued > self._idle and len(self._threads) < self.size:
            thread = threading.Thread(target=self._work, name=f"{self.name}-{self._serial}", daemon=True)
            self._serial += 1
            self._threads.append(thread)
            thread.start()

    def abandon(self, future: asyncio.Future[Any]) -> bool:
        """The call behind `future` (from `in_thread`) was given up on: if a thread of
        this pool is running it now, that thread leaves the pool (within the cap)
        and another may take its place."""
        with self._lock:
            thread = next((t for t, call in self._running.items() if getattr(call, "future", None) is future), None)
            if self._closed or thread is None or thread in self._abandoned or len(self._abandoned) >= self.max_abandoned:
                return False  # (once shut down, `shutdown` waits for the threads it knows)
            self._threads.remove(thread)
            self._abandoned.add(thread)
            self.abandoned_total += 1
            self._grow()
            return True

    def _work(self) -> None:
        me = threading.current_thread()
        while True:
            with self._lock:
                self._idle += 1
            call = self._calls.get()
            with self._lock:
                self._idle -= 1
                self._queued -= 1
                if call is not None:
                    self._running[me] = call
            if call is None:
                return
            try:
                call()  # `in_thread`'s calls catch everything themselves
            except Exception:
                _log.exception("a call submitted to %s raised", self.name)
            with self._lock:
                self._running.pop(me, None)
                if me in self._abandoned:  # replaced meanwhile: the pool is full without it
                    self._abandoned.discard(me)
                    return

    def shutdown(self, wait: bool = True) -> None:
        """Take no more calls; the threads end once the queued ones are done
        (abandoned threads are not waited for: their calls may never return)."""
        with self._lock:
            self._closed = True
            threads = list(self._threads)
            self._queued += len(threads)
        for _ in threads:
            self._calls.put(None)
        if wait:
            for thread in threads:
                thread.join()


_POOLS: weakref.WeakSet[Threads] = weakref.WeakSet()


def pool_stats() -> dict[str, tuple[int, int, int]]:
    """Per pool name, over this process's live pools: (abandoned threads now, their cap, abandoned in all)."""
    stats: dict[str, tuple[int, int, int]] = {}
    for pool in list(_POOLS):
        now, cap, total = stats.get(pool.name, (0, 0, 0))
        stats[pool.name] = (now + pool.abandoned, cap + pool.max_abandoned, total + pool.abandoned_total)
    return stats


def in_thread(executor: Pool | None, func: Callable[..., T], *args: Any) -> asyncio.Future[T]:
    """`func(*args)` in `executor` (None: the loop's default one); its result
    (or exception) as a future of the running loop."""
    loop = asyncio.get_running_loop()
    if executor is None:
        return loop.run_in_executor(None, func, *args)
    future: asyncio.Future[T] = loop.create_future()

    def run() -> None:
        if future.done():  # cancelled while it waited for a thread: it must not start (as with an executor)
            return
        try:
            result = func(*args)
        except BaseException as exc:  # handed to the awaiting coroutine
            _settle(loop, future, None, exc)
        else:
            _settle(loop, future, result, None)

    run.future = future  # type: ignore[attr-defined]  # so that `Threads.abandon` finds the call by its future
    executor.submit(run)
    return future


async def call_in(pool: Threads, func: Callable[..., T], *args: Any) -> T:
    """`in_thread` for a call that may be given up on (a time-out, a cancel): its
    thread is then abandoned, and replaced in the pool. (A done callback on every
    future would cost a loop turn per call; a subclass of Future loses asyncio's
    fast path: catching the cancellation here costs nothing.)"""
    future = in_thread(pool, func, *args)
    try:
        return await future
    except asyncio.CancelledError:
        pool.abandon(future)
        raise


def _settle(loop: asyncio.AbstractEventLoop, future: asyncio.Future[Any], result: Any, exc: BaseException | None) -> None:
    with contextlib.suppress(RuntimeError):  # the loop was closed meanwhile: nobody is waiting any more
        loop.call_soon_threadsafe(_resolve, future, result, exc)


def _resolve(future: asyncio.Future[Any], result: Any, exc: BaseException | None) -> None:
    if future.done():  # cancelled by its awaiter meanwhile
        return
    if exc is None:
        future.set_result(result)
    elif isinstance(exc, StopIteration):  # cannot be raised into a coroutine
        future.set_exception(RuntimeError(f"StopIteration raised in a thread: {exc!r}"))
    else:
        future.set_exception(exc)
