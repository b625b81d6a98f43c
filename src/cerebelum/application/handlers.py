"""The handler registry: the only code a definition can reach."""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, TypeVar, overload

from cerebelum.domain.errors import HandlerError

F = TypeVar("F", bound=Callable[..., Any])


@dataclass(frozen=True)
class Handler:
    name: str
    func: Callable[..., Any]
    is_async: bool
    intercept: bool = True  # whether time/random/uuid calls inside are made deterministic


class HandlerRegistry:
    """Names -> callables. An engine is given one; `default_registry` serves `@handler`."""

    def __init__(self) -> None:
        self._handlers: dict[str, Handler] = {}

    def register(self, name: str, func: Callable[..., Any], intercept: bool = True) -> None:
        existing = self._handlers.get(name)
        if existing is not None and existing.func is not func and _qualname(existing.func) != _qualname(func):
            raise HandlerError(f"handler '{name}' is already registered to {_qualname(existing.func)}")
        self._handlers[name] = Handler(name, func, inspect.iscoroutinefunction(func), intercept)

    def get(self, name: str) -> Handler | None:
        return self._handlers.get(name)

    def names(self) -> frozenset[str]:
        return frozenset(self._handlers)

    def __iter__(self) -> Iterator[Handler]:
        return iter(self._handlers.values())

    def __len__(self) -> int:
        return len(self._handlers)

    @overload
    def handler(self, name_or_func: F) -> F: ...

    @overload
    def handler(self, name_or_func: str | None = None, *, intercept: bool = True) -> Callable[[F], F]: ...

    def handler(self, name_or_func: Any = None, *, intercept: bool = True) -> Any:
        """Decorator: `@handler`, `@handler("name")` or `@handler("name", intercept=False)`."""
        if callable(name_or_func):
            self.register(name_or_func.__name__, name_or_func)
            return name_or_func

        def decorate(func: F) -> F:
            self.register(name_or_func or func.__name__, func, intercept)
            return func

        return decorate


def _qualname(func: Callable[..., Any]) -> str:
    return f"{getattr(func, '__module__', '?')}.{getattr(func, '__qualname__', repr(func))}"


default_registry = HandlerRegistry()
handler = default_registry.handler
