"""Use case Purge: delete finished executions that ended long enough ago, with
their events, in bounded batches; and the periodic purge a worker runs when
given a `retention` (docs/retention.md).

Each batch is its own short transaction (`BATCH_SIZE` executions), so a purge
of 100,000 executions never holds a lock or a transaction for long: workers
claim and append between two batches. Only terminal executions are deleted,
and the store checks that in the DELETE itself.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
from collections.abc import Awaitable, Callable, Collection
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import partial
from typing import Any

from cerebelum.domain.errors import Problem, ValidationError
from cerebelum.domain.events import rfc3339
from cerebelum.domain.execution import ExecutionStatus
from cerebelum.domain.ports import Clock, ExecutionRepository, PurgeSelection

log = logging.getLogger("cerebelum.retention")

BATCH_SIZE = 500
PAUSE_BETWEEN_BATCHES_S = 0.005  # lets a waiting writer (SQLite's one write lock) in between two batches
RETENTION_EVERY_S = 300.0  # how often a worker with a `retention` purges
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
_DURATION = re.compile(r"(?:\d+[smhdw])+")


def parse_duration(text: str, location: str = "--older-than") -> timedelta:
    """`30d`, `12h`, `90m`, `45s`, `2w` or a sum such as `1d12h`; ValidationError at `location` otherwise."""
    cleaned = text.strip().lower() if isinstance(text, str) else ""
    if not _DURATION.fullmatch(cleaned):
        raise ValidationError([Problem(location, f"{text!r} is not a duration: write it like 30d, 12h, 90m, 45s or 1d12h")])
    seconds = sum(int(n) * _UNITS[unit] for n, unit in re.findall(r"(\d+)([smhdw])", cleaned))
    try:
        return timedelta(seconds=seconds)
    except OverflowError:
        raise ValidationError([Problem(location, f"{text!r} is too long a duration")]) from None


def as_duration(value: timedelta | str | float | None, location: str = "retention") -> timedelta | None:
    """A retention setting as given to the Engine: a duration text, a timedelta or seconds."""
    if value is None or isinstance(value, timedelta):
        return value
    if isinstance(value, int | float) and not isinstance(value, bool) and value >= 0:
        return timedelta(seconds=value)
    return parse_duration(value if isinstance(value, str) else repr(value), location)


def terminal_statuses(given: Collection[str] | None, location: str = "--status") -> frozenset[str]:
    """The statuses a purge may delete: a subset of the terminal ones (default: all of them)."""
    if not given:
        return ExecutionStatus.TERMINAL
    wrong = sorted(set(given) - ExecutionStatus.TERMINAL)
    if wrong:
        allowed = ", ".join(sorted(ExecutionStatus.TERMINAL))
        raise ValidationError([Problem(location, f"{', '.join(wrong)}: only finished executions ({allowed}) can be purged")])
    return frozenset(given)


@dataclass(frozen=True)
class PurgeResult:
    count: int  # deleted, or (dry run) that would be
    dry_run: bool
    selection: PurgeSelection
    batches: int = 0
    seconds: float = 0.0  # how long the deleting took

    def to_json(self) -> dict[str, Any]:
        return {
            "count": self.count,
            "dry_run": self.dry_run,
            "ended_before": rfc3339(self.selection.ended_before),
            "statuses": sorted(self.selection.statuses),
            "workflow": self.selection.workflow,
            "batches": self.batches,
            "seconds": round(self.seconds, 3),
        }


def purge_executions(
    executions: ExecutionRepository,
    clock: Clock,
    older_than: timedelta,
    statuses: Collection[str] | None = None,
    workflow: str | None = None,
    *,
    dry_run: bool = False,
    batch_size: int = BATCH_SIZE,
    stop: Callable[[], bool] | None = None,
) -> PurgeResult:
    """Delete the terminal executions (of `statuses`, of `workflow`) that ended more
    than `older_than` ago, `batch_size` per transaction, until none is left (or
    `stop()` says so, checked between batches). A dry run only counts them."""
    if batch_size < 1:
        raise ValidationError([Problem("batch_size", "must be at least 1")])
    ended_before: datetime = clock.now() - older_than
    selection = PurgeSelection(ended_before, terminal_statuses(statuses), workflow)
    if dry_run:
        return PurgeResult(executions.count_purgeable(selection), True, selection)
    total = batches = 0
    began = clock.now()
    while not (stop is not None and stop()):
        # Until a batch finds nothing: a short one is not the end when another purger
        # (a worker's retention) took some of the same rows first.
        deleted = executions.purge_batch(selection, batch_size)
        if deleted == 0:
            break
        total += deleted
        batches += 1
        clock.sleep(PAUSE_BETWEEN_BATCHES_S)
    return PurgeResult(total, False, selection, batches, (clock.now() - began).total_seconds())


async def retention_loop(
    call: Callable[..., Awaitable[Any]],
    executions: ExecutionRepository,
    clock: Clock,
    retention: timedelta,
    stop: asyncio.Event,
    every_s: float = RETENTION_EVERY_S,
) -> None:
    """A worker's periodic purge: at start, then every `every_s`, until `stop`.

    Several workers on one database may purge at once: each batch deletes what
    is still there, so they only share the work."""
    while not stop.is_set():
        result: PurgeResult = await call(partial(purge_executions, stop=stop.is_set), executions, clock, retention)
        if result.count:
            ended = rfc3339(result.selection.ended_before)
            log.info("retention %s: purged %d execution(s) that ended before %s", retention, result.count, ended)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), every_s)
