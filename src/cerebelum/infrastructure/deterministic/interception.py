"""Transparent interception: inside a running step, the stdlib's clocks
(`time`, `datetime`, `asyncio.sleep`), `random` (module functions and unseeded
`random.Random()` instances) and `uuid1`/`uuid4` are served by the step's
deterministic, recorded services; everywhere else they behave exactly as
usual. The full table is in docs/determinism.md.

Which step is running is a contextvar, so steps of different executions in
threads and asyncio tasks each see their own, and the engine's own tasks
(started outside any step) never do. A step's scope is closed when its
handler returns: a thread or task the handler left running then sees the
real functions again. `time.monotonic()` and `time.perf_counter()` are left
alone: the event loop and libraries measure durations with them.
`os.urandom`, `secrets` and `random.SystemRandom` stay truly random.

Limits (see docs/determinism.md): threads a handler starts itself do not
inherit the step unless started with `contextvars.copy_context().run`;
C extensions that read the system clock directly are not covered; names
bound with `from time import time` before `import cerebelum` keep the real
function. Opt out per handler with `@handler(..., intercept=False)`, or for
the process with CEREBELUM_INTERCEPT=0 before importing cerebelum.
"""

from __future__ import annotations

import asyncio as _asyncio
import asyncio.tasks as _asyncio_tasks
import contextlib
import contextvars
import datetime as _dt
import os
import random as _random
import sys
import time as _time
import uuid as _uuid
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from typing import Any, Protocol


class StepServices(Protocol):
    """What a step offers (StepContext implements it)."""

    def now(self) -> _dt.datetime: ...
    def sleep(self, seconds: float) -> Awaitable[None]: ...
    def sleep_blocking(self, seconds: float) -> None: ...
    def uuid4(self) -> _uuid.UUID: ...
    def uuid1(self, node: int | None = None, clock_seq: int | None = None) -> _uuid.UUID: ...
    def random_seed(self) -> int: ...
    def intercepted_random(self, name: str, *args: Any, **kwargs: Any) -> Any: ...


class _Scope:
    """One step's scope: open while its handler runs (copies of the context share it)."""

    __slots__ = ("open", "services")

    def __init__(self, services: StepServices) -> None:
        self.services = services
        self.open = True


_current: contextvars.ContextVar[_Scope | None] = contextvars.ContextVar("cerebelum_step", default=None)

REAL_TIME = _time.time
REAL_TIME_NS = _time.time_ns
REAL_SLEEP = _time.sleep
REAL_DATETIME = _dt.datetime
REAL_DATE = _dt.date
REAL_UUID4 = _uuid.uuid4
REAL_UUID1 = _uuid.uuid1
REAL_LOCALTIME = _time.localtime
REAL_GMTIME = _time.gmtime
REAL_CTIME = _time.ctime
REAL_ASCTIME = _time.asctime
REAL_STRFTIME = _time.strftime
REAL_ASYNCIO_SLEEP = _asyncio.sleep
REAL_RANDOM_SEED = _random.Random.seed
RANDOM_FUNCTIONS = (
    "random", "uniform", "randint", "randrange", "choice", "choices", "shuffle", "sample",
    "getrandbits", "randbytes", "gauss", "normalvariate", "expovariate", "triangular",
    "betavariate", "gammavariate", "lognormvariate", "vonmisesvariate", "paretovariate", "weibullvariate",
)  # fmt: skip
REAL_RANDOM = {name: getattr(_random, name) for name in RANDOM_FUNCTIONS if hasattr(_random, name)}
_installed = False


def current_step() -> StepServices | None:
    """The step whose handler is running in this context (None outside one, or once it ended)."""
    scope = _current.get()
    return scope.services if scope is not None and scope.open else None


_step = current_step


@contextmanager
def step_scope(services: StepServices | None) -> Iterator[None]:
    """Make `services` the current step for the code run inside (this context only).

    On exit the scope is closed, so threads and tasks that inherited it and
    outlive the handler fall back to the real functions."""
    scope = _Scope(services) if services is not None else None
    token = _current.set(scope)
    try:
        yield
    finally:
        if scope is not None:
            scope.open = False
        _current.reset(token)


def _time_time() -> float:
    step = _step()
    return step.now().timestamp() if step is not None else REAL_TIME()


def _time_time_ns() -> int:
    step = _step()
    if step is None:
        return REAL_TIME_NS()
    moment = step.now()
    whole = int(moment.replace(microsecond=0).timestamp())
    return whole * 1_000_000_000 + moment.microsecond * 1000


def _time_sleep(seconds: float) -> None:
    step = _step()
    if step is None:
        REAL_SLEEP(seconds)
    else:
        step.sleep_blocking(seconds)


async def _asyncio_sleep(delay: float, result: Any = None) -> Any:
    """`asyncio.sleep` inside a step: served like `time.sleep` (instant in virtual time).

    `asyncio.sleep(0)` (or less) is a plain yield to the event loop, neither
    served nor recorded: libraries use it to let other tasks run. A served
    sleep still yields once, so a handler polling with it never starves the
    loop. Outside a step (the engine's own tasks) it is the real function."""
    step = _step()
    if step is None or delay <= 0:
        return await REAL_ASYNCIO_SLEEP(delay, result)
    await step.sleep(delay)  # virtual time: recorded, the clock moved; real time: recorded, then waited
    await REAL_ASYNCIO_SLEEP(0)
    return result


def _step_seconds(step: StepServices) -> float:
    return step.now().timestamp()


def _localtime(secs: Any = None) -> _time.struct_time:
    step = _step() if secs is None else None
    return REAL_LOCALTIME(_step_seconds(step) if step is not None else secs)


def _gmtime(secs: Any = None) -> _time.struct_time:
    step = _step() if secs is None else None
    return REAL_GMTIME(_step_seconds(step) if step is not None else secs)


def _ctime(secs: Any = None) -> str:
    step = _step() if secs is None else None
    return REAL_CTIME(_step_seconds(step) if step is not None else secs)


_NO_TIME: Any = object()


def _asctime(t: Any = _NO_TIME) -> str:
    if t is not _NO_TIME:
        return REAL_ASCTIME(t)
    step = _step()
    return REAL_ASCTIME(REAL_LOCALTIME(_step_seconds(step))) if step is not None else REAL_ASCTIME()


def _strftime(format: str, t: Any = _NO_TIME) -> str:
    if t is not _NO_TIME:
        return REAL_STRFTIME(format, t)
    step = _step()
    return REAL_STRFTIME(format, REAL_LOCALTIME(_step_seconds(step))) if step is not None else REAL_STRFTIME(format)


def _uuid4() -> _uuid.UUID:
    step = _step()
    return step.uuid4() if step is not None else REAL_UUID4()


def _uuid1(node: int | None = None, clock_seq: int | None = None) -> _uuid.UUID:
    step = _step()
    return step.uuid1(node, clock_seq) if step is not None else REAL_UUID1(node, clock_seq)


# Modules whose unseeded generators stay seeded from the OS even inside a step:
# tempfile makes its name generators lazily, once per process, so whether one is
# made inside a step depends on the process's history, not on the handler.
UNSERVED_SEEDERS = frozenset({"tempfile"})


def _random_seed(self: _random.Random, a: Any = None, version: int = 2) -> None:
    """`Random.seed`: an unseeded `random.Random()` (or `.seed()`) inside a step
    is seeded from the step's generator, recorded. `SystemRandom` overrides
    `seed` and is never affected."""
    if a is None:
        step = _step()
        if step is not None and _seeder() not in UNSERVED_SEEDERS:
            a = step.random_seed()
    REAL_RANDOM_SEED(self, a, version)


def _seeder() -> str:
    """The module that asked for the seed (past `random.Random.__init__`)."""
    frame = sys._getframe(2)
    while frame is not None and frame.f_globals.get("__name__") == "random":
        frame = frame.f_back  # type: ignore[assignment]
    return str(frame.f_globals.get("__name__")) if frame is not None else ""


def _random_function(name: str) -> Callable[..., Any]:
    real = REAL_RANDOM[name]

    def intercepted(*args: Any, **kwargs: Any) -> Any:
        step = _step()
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
        step = _step()
        if step is None:
            return REAL_DATE.today()
        return step.now().astimezone().date()


class datetime(REAL_DATETIME, metaclass=_DateMeta):
    @classmethod
    def now(cls, tz: _dt.tzinfo | None = None) -> _dt.datetime:  # type: ignore[override]
        step = _step()
        if step is None:
            return REAL_DATETIME.now(tz)
        moment = step.now()
        return moment.astimezone(tz) if tz is not None else moment.astimezone().replace(tzinfo=None)

    @classmethod
    def utcnow(cls) -> _dt.datetime:  # type: ignore[override]
        step = _step()
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
    _time.localtime = _localtime
    _time.gmtime = _gmtime
    _time.ctime = _ctime
    _time.asctime = _asctime
    _time.strftime = _strftime
    _asyncio.sleep = _asyncio_tasks.sleep = _asyncio_sleep
    _uuid.uuid4 = _uuid4
    _uuid.uuid1 = _uuid1
    _random.Random.seed = _random_seed  # type: ignore[method-assign]
    for name in REAL_RANDOM:
        setattr(_random, name, _random_function(name))
    _dt.datetime = datetime  # type: ignore[misc]
    _dt.date = date  # type: ignore[misc]
    _installed = True
    return True


def installed() -> bool:
    return _installed
