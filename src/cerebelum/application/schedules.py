"""Use cases of schedules (interaction.md section 6): create, pause, resume,
delete, trigger, describe; and `fire_due`, the pass every worker process
makes, with the `Scheduler` loop that runs it beside the worker pool.

No leader: any number of processes may compute the same due tick. The
tick's start carries the key `schedule:<name>:<tick>`, so the database makes
one execution of it; the schedule row's `last_tick` / `next_fire` advance by
compare-and-set, and a process that dies between the start and the
bookkeeping leaves the tick to the next pass, which finds its execution by
the key. Everything reads the Clock port, so tests drive it with a fake one.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import threading
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from cerebelum.application.activities import NUL_PROBLEM, has_nul
from cerebelum.application.execute_workflow import InvalidInput, KeyReused, StartRequest, open_execution
from cerebelum.domain.errors import Conflict, NotFound, Problem, StoreUnavailable, ValidationError
from cerebelum.domain.execution import Execution
from cerebelum.domain.limits import configured
from cerebelum.domain.ports import Calendar, Clock, IdSource, Store
from cerebelum.domain.schedules import (
    ACTIVE,
    MAX_CATCHUP,
    PAUSED,
    Schedule,
    Tick,
    TickOutcome,
    read_schedule,
    tick_key,
    tick_text,
)
from cerebelum.domain.values import locate_value_problem

log = logging.getLogger("cerebelum.schedules")
MISFIRE_GRACE_S = 1.0  # a tick started later than this is late; with catchup `none`, missed
UPDATE_RETRIES = 20


@dataclass
class TickCounts:
    """What this process's scheduler did (Prometheus counters); schedules are fired
    from several database threads at once."""

    started: int = 0
    skipped: int = 0
    late: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def add(self, started: int = 0, skipped: int = 0, late: int = 0) -> None:
        with self._lock:
            self.started, self.skipped, self.late = self.started + started, self.skipped + skipped, self.late + late


@dataclass(frozen=True)
class SchedulePorts:
    store: Store
    calendar: Calendar
    clock: Clock
    ids: IdSource


def create_schedule(document: Any, ports: SchedulePorts) -> Schedule:
    """Validate (every problem, each located by its field) and store a schedule;
    Conflict if the name is taken."""
    now = ports.clock.now()
    schedule = read_schedule(document, now)
    problems = [Problem(where, message) for where, message in ports.calendar.problems(schedule)]
    if (trouble := _input_problem(schedule.input)) is not None:
        problems.append(Problem("input", trouble))
    try:
        ports.store.workflows.get(schedule.workflow, schedule.version)
    except NotFound as exc:
        problems.append(Problem("version" if schedule.version is not None else "workflow", str(exc)))
    if problems:
        raise ValidationError(problems)
    schedule = schedule.evolve(next_fire=ports.calendar.following(schedule, now, 1)[0])
    ports.store.schedules.add(schedule)
    return schedule


def _input_problem(value: Any) -> str | None:
    """As a start checks its input (once, the same on every backend), before anything is stored."""
    found = locate_value_problem(value, configured().max_value_depth, "input")
    if found is not None:
        return f"at {found[0]}: {found[1]}" if found[0] != "input" else found[1]
    try:
        text = json.dumps(value, allow_nan=False)
    except (TypeError, ValueError) as exc:
        return f"not JSON: {exc}"
    return f"holds {NUL_PROBLEM}" if has_nul(text) else None


def _change(name: str, ports: SchedulePorts, change: Callable[[Schedule], Schedule]) -> Schedule:
    for _ in range(UPDATE_RETRIES):
        current = ports.store.schedules.get(name)
        changed = change(current)
        if ports.store.schedules.update(changed):
            return changed.evolve(revision=current.revision + 1)
    raise Conflict(f"schedule '{name}' is being changed by others: try again")


def pause_schedule(name: str, ports: SchedulePorts) -> Schedule:
    """No tick fires while paused (a `trigger` still does)."""
    return _change(name, ports, lambda s: s.evolve(state=PAUSED))


def resume_schedule(name: str, ports: SchedulePorts) -> Schedule:
    """Ticks that passed while paused are not caught up: the next one is after now."""

    def resume(schedule: Schedule) -> Schedule:
        if schedule.active:
            return schedule
        now = ports.clock.now()
        return schedule.evolve(state=ACTIVE, last_tick=now, next_fire=ports.calendar.following(schedule, now, 1)[0])

    return _change(name, ports, resume)


def delete_schedule(name: str, ports: SchedulePorts) -> None:
    """The schedule and its history go; the executions it started stay."""
    ports.store.schedules.delete(name)


def trigger_schedule(name: str, ports: SchedulePorts) -> Execution:
    """Start one execution now, whatever the state and overlap (its tick is now, to the millisecond)."""
    schedule = ports.store.schedules.get(name)
    now = ports.clock.now()
    tick = now.replace(microsecond=now.microsecond // 1000 * 1000)
    request = StartRequest(schedule.input, key=tick_key(name, tick), schedule=(name, tick))
    execution, _, _ = open_execution(schedule.workflow, schedule.version, request, ports.store, ports.clock, ports.ids)
    ports.store.schedules.record(Tick(name, tick, TickOutcome.TRIGGERED, now, execution.id))
    return execution


def describe_schedule(name: str, ports: SchedulePorts, upcoming: int = 5, recent: int = 20) -> dict[str, Any]:
    """The schedule, its next fire times and its recent ticks with their executions' status."""
    schedule = ports.store.schedules.get(name)
    return {**schedule.to_json(), **_details(schedule, ports, upcoming, recent)}


def list_schedules(ports: SchedulePorts, upcoming: int = 1, recent: int = 5) -> list[dict[str, Any]]:
    return [{**s.to_json(), **_details(s, ports, upcoming, recent)} for s in ports.store.schedules.all()]


def _details(schedule: Schedule, ports: SchedulePorts, upcoming: int, recent: int) -> dict[str, Any]:
    fires: list[datetime] = []
    if schedule.active:
        start = max(ports.clock.now(), schedule.last_tick or schedule.created_at)
        if schedule.next_fire is not None and schedule.next_fire <= start:
            fires = [schedule.next_fire]  # due now: the next pass starts it
        fires += ports.calendar.following(schedule, start, upcoming - len(fires))
    ticks = []
    for tick in ports.store.schedules.ticks(schedule.name, recent):
        status = None
        if tick.execution_id is not None:
            with contextlib.suppress(NotFound):
                status = ports.store.executions.get(tick.execution_id).status
        ticks.append({**tick.to_json(), "status": status})
    return {"next_fires": [tick_text(t) for t in fires], "recent": ticks}


def _catchup(policy: str, due: list[datetime], now: datetime) -> tuple[list[datetime], list[datetime]]:
    """(ticks to start, ticks missed). `latest`: only the latest due tick; `all`: each
    (the latest MAX_CATCHUP); `none`: only a tick due within the grace, none older."""
    if not due:
        return [], []
    if policy == "all":
        return due[-MAX_CATCHUP:], due[:-MAX_CATCHUP]
    if policy == "none" and (now - due[-1]).total_seconds() > MISFIRE_GRACE_S:
        return [], due
    return due[-1:], due[:-1]


def fire_due(ports: SchedulePorts, counts: TickCounts | None = None) -> tuple[list[Execution], datetime | None]:
    """One pass over the active schedules, one after the other (the `Scheduler`
    fires them in parallel). Returns the executions this pass created and the
    soonest next fire time."""
    created: list[Execution] = []
    soonest: datetime | None = None
    for schedule in ports.store.schedules.all(ACTIVE):
        next_fire = schedule.next_fire
        if next_fire is None or next_fire <= ports.clock.now():
            made, next_fire = fire_schedule(schedule, ports, counts)
            created += made
        if next_fire is not None and (soonest is None or next_fire < soonest):
            soonest = next_fire
    return created, soonest


def fire_schedule(
    schedule: Schedule, ports: SchedulePorts, counts: TickCounts | None = None
) -> tuple[list[Execution], datetime | None]:
    """Start each due tick of one schedule (once in the whole database), record
    skipped and missed ones, advance its bookkeeping. Returns the executions
    created and the next fire time (None: the schedule could not be handled)."""
    counts = counts if counts is not None else TickCounts()
    created: list[Execution] = []
    try:
        return created, _fire_schedule(schedule, ports.clock.now(), ports, counts, created)
    except NotFound:  # deleted meanwhile
        return created, None
    except StoreUnavailable:
        raise  # the database, not this schedule: the pass is retried
    except Exception:  # one broken schedule must not stop the others
        log.exception("schedule %s: its due ticks could not be handled; retried next pass", schedule.name)
        return created, None


def _fire_schedule(
    schedule: Schedule, now: datetime, ports: SchedulePorts, counts: TickCounts, created: list[Execution]
) -> datetime:
    due = ports.calendar.due(schedule, schedule.last_tick or schedule.created_at, now, MAX_CATCHUP + 1)
    fire, missed = _catchup(schedule.catchup, due, now)
    if missed:
        more = "more than " if len(due) > MAX_CATCHUP else ""
        reason = (
            f"{more}{len(missed)} tick(s) from {tick_text(missed[0])} missed while no worker ran the schedule "
            f"(catchup {schedule.catchup})"
        )
        ports.store.schedules.record(Tick(schedule.name, missed[-1], TickOutcome.MISSED, now, None, reason))
    for tick in fire:
        _fire_tick(schedule, tick, ports, counts, created)
    next_fire = ports.calendar.following(schedule, max(now, due[-1]) if due else now, 1)[0]
    ports.store.schedules.update(schedule.evolve(last_tick=due[-1] if due else schedule.last_tick, next_fire=next_fire))
    return next_fire  # (a failed compare-and-set: another process advanced it as far)


def _fire_tick(schedule: Schedule, tick: datetime, ports: SchedulePorts, counts: TickCounts, created: list[Execution]) -> None:
    store, name, key = ports.store, schedule.name, tick_key(schedule.name, tick)
    now = ports.clock.now()
    if schedule.overlap == "skip" and store.executions.find_by_key(key) is None:
        previous = store.schedules.latest_execution(name)
        if previous is not None and not previous.is_terminal and previous.key != key:
            reason = f"overlap skip: the previous execution {previous.id} has not ended ({previous.status})"
            if store.schedules.record(Tick(name, tick, TickOutcome.SKIPPED, now, None, reason)):
                counts.add(skipped=1)
            return
    request = StartRequest(schedule.input, key=key, schedule=(name, tick))
    try:
        execution, _, new = open_execution(schedule.workflow, schedule.version, request, store, ports.clock, ports.ids)
    except (NotFound, KeyReused, InvalidInput) as exc:  # the workflow was deleted, or the key was used otherwise
        if store.schedules.record(Tick(name, tick, TickOutcome.SKIPPED, now, None, f"not started: {exc}")):
            counts.add(skipped=1)
            log.warning("schedule %s: tick %s not started: %s", name, tick_text(tick), exc)
        return
    store.schedules.record(Tick(name, tick, TickOutcome.STARTED, now, execution.id))
    if new:
        created.append(execution)
        counts.add(started=1, late=int((now - tick).total_seconds() > MISFIRE_GRACE_S))


DatabaseCall = Callable[..., Awaitable[Any]]


@dataclass
class Scheduler:
    """The periodic pass of one worker process: wakes at the soonest next fire
    time (at least every `interval` s, to see new and resumed schedules)."""

    ports: SchedulePorts | None  # None: no calendar, no schedules fired here
    call: DatabaseCall  # runs a store call in a database thread
    wake_workers: Callable[[], None]
    interval: float = 1.0
    counts: TickCounts = field(default_factory=TickCounts)

    async def run(self, stop: asyncio.Event) -> None:
        if self.ports is None:
            return
        while not stop.is_set():
            try:
                soonest = await self.fire(self.ports)
            except StoreUnavailable as exc:  # the ticks wait: their keys make a later pass start each once
                log.warning("scheduler: %s; trying again", exc)
                soonest = None
            wait = self.interval
            if soonest is not None:
                wait = min(wait, max(0.01, (soonest - self.ports.clock.now()) / timedelta(seconds=1)))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), wait)

    async def fire(self, ports: SchedulePorts) -> datetime | None:
        """One pass: the due schedules are fired in parallel (database threads), so
        that a hundred every-second schedules fit in a second."""
        schedules = await self.call(ports.store.schedules.all, ACTIVE)
        now = ports.clock.now()
        due = [s for s in schedules if s.next_fire is None or s.next_fire <= now]
        later = [s.next_fire for s in schedules if s.next_fire is not None and s.next_fire > now]
        results = await asyncio.gather(*(self.call(fire_schedule, s, ports, self.counts) for s in due))
        if any(made for made, _ in results):
            self.wake_workers()
        return min([*later, *(next_fire for _, next_fire in results if next_fire is not None)], default=None)
