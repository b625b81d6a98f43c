"""Transparent interception: inside a running step, the stdlib's clocks,
`random` and `uuid4` are served by the step's deterministic, recorded
services; everywhere else they behave exactly as usual.

Which step is running is a contextvar, so steps of different executions in
threads and asyncio tasks each see their own. `time.monotonic()` and
`time.perf_counter()` are left alone: the event loop and libraries measure
durations with them.

Limits (see docs/determinism.md): threads a handler starts itself do not
inherit the step unless started with `contextvars.copy_context().run`;
C extensions that read the system clock directly are not covered; names
bound with `from time import time` before `import cerebelum` keep the real
function. Opt out per handler with `@handler(..., intercept=False)`, or for
the process with CEREBELUM_INTERCEPT=0 before importing cerebelum.
"""

from __future__ import annotations

import contextlib
import contextvars
import datetime as _dt
import os
import random as _random
import time as _time
import uuid as _uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, Protocol


class StepServices(Protocol):
    """What a step offers (StepContext implements it)."""

    def now(self) -> _dt.datetime: ...
    def sleep_blocking(self, seconds: float) -> None: ...
    def uuid4(self) -> _uuid.UUID: ...
    def intercepted_random(self, name: str, *args: Any, **kwargs: Any) -> Any: ...


_current: contextvars.ContextVar[StepServices | None] = contextvars.ContextVar("cerebelum_step", default=None)

REAL_TIME = _time.time
REAL_TIME_NS = _time.time_ns
REAL_SLEEP = _time.sleep
REAL_DATETIME = _dt.datetime
REAL_DATE = _dt.date
REAL_UUID4 = _uuid.uuid4
RANDOM_FUNCTIONS = (
    "random", "uniform", "randint", "randrange", "choice", "choices", "shuffle", "sample",
    "getrandbits", "randbytes", "gauss", "normalvariate", "expovariate", "triangular",
    "betavariate", "gammavariate", "lognormvariate", "vonmisesvariate", "paretovariate", "weibullvariate",
)  # fmt: skip
REAL_RANDOM = {name: getattr(_random, name) for name in RANDOM_FUNCTIONS if hasattr(_random, name)}
_installed = False


def current_step() -> StepServices | None:
    return _current.get()


@contextmanager
def step_scope(services: StepServices | None) -> Iterator[None]:
    """Make `services` the current step for the code run inside (this context only)."""
    token = _current.set(services)
    try:
        yield
    finally:
        _current.reset(token)


def _time_time() -> float:
    step = _current.get()
    return step.now().timestamp() if step is not None else REAL_TIME()


def _time_time_ns() -> int:
    step = _current.get()
    if step is None:
        return REAL_TIME_NS()
    moment = step.now()
    whole = int(moment.replace(microsecond=0).timestamp())
    return whole * 1_000_000_000 + moment.microsecond * 1000


def _time_sleep(seconds: float) -> None:
    step = _current.get()
    if step is None:
        REAL_SLEEP(seconds)
    else:
        step.sleep_blocking(seconds)


def _uuid4() -> _uuid.UUID:
    step = _current.get()
    return step.uuid4() if step is not None else REAL_UUID4()


def _random_function(name: str) -> Callable[..., Any]:
    real = REAL_RANDOM[name]

    def intercepted(*args: Any, **kwargs: Any) -> Any:
        step = _current.get()
        if step is None:
            return real(*args, **kwargs)
        return step.intercepted_random(name, *args, **kwargs)

    intercepted.__name__ = name
    intercepted.__doc__ = real.__doc__
    return intercepted


class _DateMeta(type):
    """isinstance() against the patched classes accepts real dates/datetimes."""

    def __instancecheck__(cls, obj: object) -> bool:
        real = REAL_DATETIME if cls.__name__ == "datetime" else REAL_DATE
        return isinstance(obj, real)

    def __subclasscheck__(cls, sub: type) -> bool:
        real = REAL_DATETIME if cls.__name__ == "datetime" else REAL_DATE
        return issubclass(sub, real)


class date(REAL_DATE, metaclass=_DateMeta):
    @classmethod
    def today(cls) -> _dt.date:  # type: ignore[override]
        step = _current.get()
        if step is None:
            return REAL_DATE.today()
        return step.now().astimezone().date()


class datetime(REAL_DATETIME, metaclass=_DateMeta):
    @classmethod
    def now(cls, tz: _dt.tzinfo | None = None) -> _dt.datetime:  # type: ignore[override]
        step = _current.get()
        if step is None:
            return REAL_DATETIME.now(tz)
        moment = step.now()
        return moment.astimezone(tz) if tz is not None else moment.astimezone().replace(tzinfo=None)

    @classmethod
    def utcnow(cls) -> _dt.datetime:  # type: ignore[override]
        step = _current.get()
        if step is None:
            return REAL_DATETIME.now(_dt.UTC).replace(tzinfo=None)
        return step.now().astimezone(_dt.UTC).replace(tzinfo=None)

    @classmethod
    def today(cls) -> _dt.datetime:  # type: ignore[override]
        return cls.now()


def _preload_libraries() -> None:
    """Import the libraries we rely on first, so they keep the real classes."""
    # pydantic.v1 (loaded by FastAPI) subclasses datetime.date: it must see the real one
    for name in ("sqlalchemy", "psycopg", "yaml", "pydantic.v1"):
        with contextlib.suppress(ImportError):
            __import__(name)


def install() -> bool:
    """Patch the stdlib once per process; False when disabled by CEREBELUM_INTERCEPT=0."""
    global _installed
    if _installed:
        return True
    if os.environ.get("CEREBELUM_INTERCEPT", "1").lower() in ("0", "false", "no", "off"):
        return False
    _preload_libraries()
    _time.time = _time_time
    _time.time_ns = _time_time_ns
    _time.sleep = _time_sleep  # type: ignore[assignment]
    _uuid.uuid4 = _uuid4
    for name in REAL_RANDOM:
        setattr(_random, name, _random_function(name))
    _dt.datetime = datetime  # type: ignore[misc]
    _dt.date = date  # type: ignore[misc]
    _installed = True
    return True


def installed() -> bool:
    return _installed
