"""StepContext: what a handler receives, with per-execution deterministic services."""

from __future__ import annotations

import asyncio
import random
import threading
import uuid
from collections import deque
from collections.abc import Awaitable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

from cerebelum.domain.errors import CerebelumError
from cerebelum.domain.events import parse_rfc3339, rfc3339
from cerebelum.domain.execution import idempotency_key, node_run_seed
from cerebelum.domain.limits import INT64_MAX, INT64_MIN
from cerebelum.domain.orchestrator import Invoke
from cerebelum.domain.ports import Clock

T = TypeVar("T")


class ReplayMismatch(CerebelumError):
    """A re-invoked handler asked for something the log did not record."""


class _Done:
    """An already-finished awaitable, so `await ctx.sleep(s)` works in virtual time."""

    def __await__(self) -> Any:
        return None
        yield  # pragma: no cover - makes this a generator


async def _wait(seconds: float) -> None:
    """A real wait on the running loop. Not `asyncio.sleep`: inside a step,
    interception serves that one through `ctx.sleep`, which would record twice."""
    loop = asyncio.get_running_loop()
    done = loop.create_future()
    timer = loop.call_later(seconds, _resolve, done)
    try:
        await done
    finally:
        timer.cancel()


def _resolve(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


# uuid1 counts 100 ns ticks from the Gregorian reform
_UUID1_EPOCH = datetime(1582, 10, 15, tzinfo=UTC)


class StepContext:
    """One attempt of one node run.

    `now()`, `sleep()`, `random()`, `randint()`, `uuid4()` are served per
    execution: randomness from a generator seeded by (execution seed, node
    path, run, attempt); in virtual time the clock moves only by sleeps.
    Every value handed out is recorded in the attempt's outcome event; a
    strict replay passes those records back in `replayed`, and every value
    is then served from them instead of drawn again. Where the handler's own
    request is in the record (a sleep's duration, uuid1's node or clock
    sequence), a replay that asks for another is a mismatch.
    """

    def __init__(
        self,
        execution_id: str,
        seed: int,
        activity: Invoke,
        clock: Clock,
        virtual: bool,
        replayed: Sequence[dict[str, Any]] | None = None,
    ) -> None:
        view = activity.view
        self.execution_id = execution_id
        self.node_id = activity.path
        self.run = activity.run
        self.attempt = activity.attempt
        self.input = view.input
        self.results = view.results
        self.data = view.data
        self.item = view.item if view.in_map else None
        self.index = view.index
        self.idempotency_key = idempotency_key(execution_id, activity.path, activity.run)
        self._wall = clock
        self._clock = activity.clock if virtual else None
        # The generator's seed, from private copies: a handler may assign ctx.attempt.
        self._seed_of_run = (seed, activity.path, activity.run, activity.attempt)
        self._random: random.Random | None = None
        self._random_lock = threading.Lock()
        self._replayed = deque(replayed) if replayed is not None else None
        self._last_uuid1 = -1  # uuid1 timestamps of this step only ever increase
        self.recorded: list[dict[str, Any]] = []

    @property
    def _rng(self) -> random.Random:
        """Seeded on first use: most steps never draw a random number."""
        with self._random_lock:  # two threads drawing first must not both seed one
            if self._random is None:
                self._random = random.Random(node_run_seed(*self._seed_of_run))
            return self._random

    def _serve(self, op: str, draw: Any, check: Any = None) -> Any:
        """Record a value: drawn now, or served from the log during a strict replay.

        `check(value)`, in a replay, says why the recorded value does not fit
        what the handler asks for now (or None when it does)."""
        if self._replayed is not None:
            if not self._replayed or self._replayed[0]["op"] != op:
                found = self._replayed[0]["op"] if self._replayed else "nothing"
                raise ReplayMismatch(f"handler asked for {op} where the log recorded {found}")
            value = _from_record(self._replayed[0]["value"])
            problem = check(value) if check is not None else None
            if problem is not None:
                raise ReplayMismatch(problem)
            self._replayed.popleft()
        else:
            value = draw()
        self.recorded.append({"op": op, "value": _to_record(value)})
        return value

    # -- time -------------------------------------------------------------

    def now(self) -> datetime:
        """The execution's time: virtual, or the real time (recorded either way)."""
        current = self._clock
        text = self._serve("now", lambda: rfc3339(current if current is not None else self._wall.now()))
        return parse_rfc3339(text)

    def _advance(self, seconds: float) -> bool:
        """Record a sleep; True if it is virtual (already done)."""

        def same(recorded: Any) -> str | None:
            return None if recorded == seconds else f"handler slept {seconds!r} s where the log recorded {recorded!r} s"

        self._serve("sleep", lambda: seconds, same)
        if self._clock is not None:
            self._clock += timedelta(seconds=seconds)
            return True
        return self._replayed is not None  # a replay never waits

    def sleep(self, seconds: float) -> Awaitable[None]:
        """Wait `seconds` (instantly in virtual time). Await it in async handlers."""
        if self._advance(seconds):
            return _Done()
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            self._wall.sleep(seconds)  # a sync handler, in a worker thread
            return _Done()
        return _wait(seconds)

    def sleep_blocking(self, seconds: float) -> None:
        """`time.sleep` inside a step: blocks in real time, advances virtual time."""
        if not self._advance(seconds):
            self._wall.sleep(seconds)

    @property
    def clock(self) -> datetime | None:
        """The virtual clock at this point (None in real time)."""
        return self._clock

    # -- randomness ---------------------------------------------------------

    def random(self) -> float:
        return float(self._serve("random", self._rng.random))

    def randint(self, a: int, b: int) -> int:
        return int(self._serve("randint", lambda: self._rng.randint(a, b)))

    def choice(self, options: Sequence[T]) -> T:
        return options[int(self._serve("choice", lambda: self._rng.randrange(len(options))))]

    def shuffle(self, items: list[Any]) -> None:
        order = self._serve("shuffle", lambda: self._rng.sample(range(len(items)), len(items)))
        items[:] = [items[i] for i in order]

    def uuid4(self) -> uuid.UUID:
        return uuid.UUID(self._serve("uuid4", lambda: str(uuid.UUID(int=self._rng.getrandbits(128), version=4))))

    def uuid1(self, node: int | None = None, clock_seq: int | None = None) -> uuid.UUID:
        """A version-1 uuid: the execution's clock as its time; node and clock
        sequence, unless given, drawn from the node run's generator (the node
        with its multicast bit set, as RFC 4122 asks of a node that is no MAC)."""

        def draw() -> str:
            moment = self._clock if self._clock is not None else self._wall.now()
            if moment.tzinfo is None:
                moment = moment.replace(tzinfo=UTC)
            since = moment - _UUID1_EPOCH
            ticks = max((since.days * 86_400 + since.seconds) * 10_000_000 + since.microseconds * 10, self._last_uuid1 + 1)
            self._last_uuid1 = ticks
            seq = clock_seq if clock_seq is not None else self._rng.getrandbits(14)
            host = node if node is not None else self._rng.getrandbits(48) | (1 << 40)
            fields = (ticks & 0xFFFFFFFF, (ticks >> 32) & 0xFFFF, (ticks >> 48) & 0x0FFF, (seq >> 8) & 0x3F, seq & 0xFF, host)
            return str(uuid.UUID(fields=fields, version=1))

        def same(recorded: Any) -> str | None:
            value = uuid.UUID(recorded)
            if node is not None and value.node != node:
                return f"handler asked for uuid1 with node {node:#x} where the log recorded node {value.node:#x}"
            if clock_seq is not None and value.clock_seq != clock_seq & 0x3FFF:
                return f"handler asked for uuid1 with clock_seq {clock_seq} where the log recorded {value.clock_seq}"
            return None

        return uuid.UUID(self._serve("uuid1", draw, same))

    def random_seed(self) -> int:
        """A seed for a `random.Random()` the handler makes without one (interception)."""
        return int(self._serve("random.Random", lambda: self._rng.getrandbits(64)))

    def intercepted_random(self, name: str, *args: Any, **kwargs: Any) -> Any:
        """A `random.<name>(...)` call made inside the step (transparent interception)."""
        if name == "shuffle":
            self.shuffle(args[0])
            return None
        if name == "randbytes":
            return bytes.fromhex(self._serve("random.randbytes", lambda: self._rng.randbytes(*args).hex()))
        value = self._serve(f"random.{name}", lambda: getattr(self._rng, name)(*args, **kwargs))
        if name == "sample" or name == "choices":
            return list(value)
        return value


def _to_record(value: Any) -> Any:
    """What the log can store: an integer beyond 64 bits (`getrandbits(64)` and
    up) is kept exact as a decimal string, as stores refuse it as a number."""
    if isinstance(value, int) and not isinstance(value, bool) and not INT64_MIN <= value <= INT64_MAX:
        return {"int": str(value)}
    return value


def _from_record(value: Any) -> Any:
    if isinstance(value, dict) and len(value) == 1 and isinstance(value.get("int"), str):
        return int(value["int"])
    return value
