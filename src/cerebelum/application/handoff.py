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
    Calls are fire-and-forget: `in_thread` carries their outcome."""

    def __init__(self, size: int, name: str) -> None:
        self.size = size
        self.name = name
        self._calls: queue.SimpleQueue[Callable[[], Any] | None] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._threads: list[threading.Thread] = []
        self._idle = 0  # threads waiting for a call
        self._queued = 0  # calls no thread has taken yet
        self._closed = False

    def submit(self, fn: Callable[[], Any], /) -> None:
        with self._lock:
            if self._closed:
                raise RuntimeError(f"{self.name} is shut down")
            self._queued += 1
            if self._queued > self._idle and len(self._threads) < self.size:
                thread = threading.Thread(target=self._work, name=f"{self.name}-{len(self._threads)}", daemon=True)
                self._threads.append(thread)
                thread.start()
        self._calls.put(fn)

    def _work(self) -> None:
        while True:
            with self._lock:
                self._idle += 1
            call = self._calls.get()
            with self._lock:
                self._idle -= 1
                self._queued -= 1
            if call is None:
                return
            try:
                call()  # `in_thread`'s calls catch everything themselves
            except Exception:
                _log.exception("a call submitted to %s raised", self.name)

    def shutdown(self, wait: bool = True) -> None:
        """Take no more calls; the threads end once the queued ones are done."""
        with self._lock:
            self._closed = True
            threads = list(self._threads)
            self._queued += len(threads)
        for _ in threads:
            self._calls.put(None)
        if wait:
            for thread in threads:
                thread.join()


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

    executor.submit(run)
    return future


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
