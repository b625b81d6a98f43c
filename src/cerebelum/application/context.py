"""StepContext: what a handler receives, with per-execution deterministic services."""

from __future__ import annotations

import asyncio
import random
import time
import uuid
from collections.abc import Awaitable, Sequence
from datetime import datetime, timedelta
from typing import Any, TypeVar

from cerebelum.domain.events import rfc3339
from cerebelum.domain.execution import idempotency_key, node_run_seed
from cerebelum.domain.orchestrator import Invoke
from cerebelum.domain.ports import Clock

T = TypeVar("T")


class _Done:
    """An already-finished awaitable, so `await ctx.sleep(s)` works in virtual time."""

    def __await__(self) -> Any:
        return None
        yield  # pragma: no cover - makes this a generator


class StepContext:
    """One attempt of one node run.

    `now()`, `sleep()`, `random()`, `randint()`, `uuid4()` are served per
    execution: randomness from a generator seeded by (execution seed, node
    path, run, attempt); in virtual time the clock moves only by sleeps.
    Every value handed out is recorded in the attempt's outcome event.
    """

    def __init__(self, execution_id: str, seed: int, activity: Invoke, clock: Clock, virtual: bool) -> None:
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
        self._virtual = virtual
        self._clock = activity.clock if virtual else None
        self._rng = random.Random(node_run_seed(seed, activity.path, activity.run, activity.attempt))
        self.recorded: list[dict[str, Any]] = []

    # -- time -------------------------------------------------------------

    def now(self) -> datetime:
        """The execution's time: virtual, or the real time (recorded either way)."""
        moment = self._clock if self._clock is not None else self._wall.now()
        self.recorded.append({"op": "now", "value": rfc3339(moment)})
        return moment

    def sleep(self, seconds: float) -> Awaitable[None]:
        """Wait `seconds`: instantly in virtual time. Await it in async handlers."""
        self.recorded.append({"op": "sleep", "value": seconds})
        if self._clock is not None:
            self._clock += timedelta(seconds=seconds)
            return _Done()
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            time.sleep(seconds)  # a sync handler, in a worker thread
            return _Done()
        return asyncio.sleep(seconds)

    @property
    def clock(self) -> datetime | None:
        """The virtual clock at this point (None in real time)."""
        return self._clock

    # -- randomness ---------------------------------------------------------

    def _record(self, op: str, value: T) -> T:
        self.recorded.append({"op": op, "value": value})
        return value

    def random(self) -> float:
        return self._record("random", self._rng.random())

    def randint(self, a: int, b: int) -> int:
        return self._record("randint", self._rng.randint(a, b))

    def choice(self, options: Sequence[T]) -> T:
        index = self._rng.randrange(len(options))
        self._record("choice", index)
        return options[index]

    def shuffle(self, items: list[Any]) -> None:
        self._rng.shuffle(items)
        self._record("shuffle", len(items))

    def uuid4(self) -> uuid.UUID:
        value = uuid.UUID(int=self._rng.getrandbits(128), version=4)
        self._record("uuid4", str(value))
        return value

