"""Running blocking calls (sync handlers, database calls) in a thread from the event loop.

`loop.run_in_executor` chains a concurrent future to an asyncio one through
several callbacks and locks; every step crosses threads twice, so this
hand-off does only what is needed: run in the pool, then resolve an asyncio
future with one `call_soon_threadsafe`.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from concurrent.futures import Executor
from typing import Any, TypeVar

T = TypeVar("T")


def in_thread(executor: Executor | None, func: Callable[..., T], *args: Any) -> asyncio.Future[T]:
    """`func(*args)` in `executor` (None: the loop's default one); its result
    (or exception) as a future of the running loop."""
    loop = asyncio.get_running_loop()
    if executor is None:
        return loop.run_in_executor(None, func, *args)
    future: asyncio.Future[T] = loop.create_future()

    def run() -> None:
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
