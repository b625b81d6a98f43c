"""The loop/thread bridge: the Engine's blocking methods run their async
twins on one event loop of the Engine's own, in a daemon thread."""

from __future__ import annotations

import asyncio
import functools
import threading
from collections.abc import Callable, Coroutine
from typing import TYPE_CHECKING, Any, Concatenate, ParamSpec, TypeVar

if TYPE_CHECKING:
    from cerebelum.engine import Engine

T = TypeVar("T")
P = ParamSpec("P")


class LoopThread:
    """An event loop in a thread of its own, started on first use."""

    def __init__(self, name: str = "cerebelum-engine") -> None:
        self.name = name
        self.loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        """Run `coro` on the loop and wait for it (never from inside an event loop)."""
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            pass
        else:
            coro.close()
            raise RuntimeError("Engine's blocking methods cannot run inside an event loop: use the *_async twins")
        with self._lock:
            if self.loop is None:
                loop = asyncio.new_event_loop()
                thread = threading.Thread(target=loop.run_forever, name=self.name, daemon=True)
                thread.start()
                self.loop, self._thread = loop, thread
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result()

    def stop(self) -> None:
        """Stop and close the loop (after whatever must run in it has run)."""
        if self.loop is None:
            return
        self.loop.call_soon_threadsafe(self.loop.stop)
        assert self._thread is not None
        self._thread.join()
        self.loop.close()


def blocking(method: Callable[Concatenate[Engine, P], Coroutine[Any, Any, T]]) -> Callable[Concatenate[Engine, P], T]:
    """The blocking twin of an async method: same arguments, same docstring."""

    def twin(self: Engine, /, *args: P.args, **kwargs: P.kwargs) -> T:
        return self._bridge.run(method(self, *args, **kwargs))

    functools.update_wrapper(twin, method)
    twin.__name__ = twin.__qualname__ = method.__name__.removesuffix("_async")
    return twin
