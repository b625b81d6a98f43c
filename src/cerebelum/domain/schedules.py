"""Schedules: executions of a workflow started on a clock (interaction.md section 6).

A schedule is a row of its own; each due tick starts one execution through
the idempotent start key `schedule:<name>:<tick>` (section 5), so any number
of processes may compute the same tick and the database still makes one
execution of it. Cron arithmetic is a port (`Calendar`): the domain only
holds the values and their validation.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any

from cerebelum.domain.errors import Problem, ValidationError
from cerebelum.domain.events import rfc3339
from cerebelum.domain.names import NAME_RE

OVERLAPS = ("skip", "allow")
CATCHUPS = ("latest", "all", "none")
ACTIVE, PAUSED = "active", "paused"
MAX_CATCHUP = 100  # catchup `all`: at most this many missed ticks are started
MAX_EVERY_S = 366 * 24 * 3600
FIELDS = ("name", "workflow", "version", "input", "cron", "every_s", "timezone", "overlap", "catchup", "state")


class TickOutcome:
    STARTED = "started"  # an execution was started for the tick (or found started by another process)
    SKIPPED = "skipped"  # overlap skip, or the start was refused (reason says why)
    MISSED = "missed"  # ticks passed while no worker ran, not started by the catchup policy
    TRIGGERED = "triggered"  # started by hand (`trigger`)


@dataclass(frozen=True)
class Schedule:
    """A schedule row. `last_tick` is the latest tick handled (started, skipped or
    missed) and `next_fire` the next one due; both advance by compare-and-set on
    `revision`, so processes racing on a tick agree on where the schedule is."""

    name: str
    workflow: str
    input: Any
    created_at: datetime
    version: int | None = None
    cron: str | None = None
    every_s: int | None = None
    timezone: str = "UTC"
    overlap: str = "skip"
    catchup: str = "latest"
    state: str = ACTIVE
    last_tick: datetime | None = None
    next_fire: datetime | None = None
    revision: int = 0

    def evolve(self, **changes: Any) -> Schedule:
        return replace(self, **changes)

    @property
    def active(self) -> bool:
        return self.state == ACTIVE

    def to_json(self) -> dict[str, Any]:
        """The shape of `schedules show --json` and the HTTP API."""
        return {
            "name": self.name,
            "workflow": self.workflow,
            "version": self.version,
            "input": self.input,
            "cron": self.cron,
            "every_s": self.every_s,
            "timezone": self.timezone,
            "overlap": self.overlap,
            "catchup": self.catchup,
            "state": self.state,
            "created_at": rfc3339(self.created_at),
            "last_tick": tick_text(self.last_tick) if self.last_tick else None,
            "next_fire": tick_text(self.next_fire) if self.next_fire and self.active else None,
        }


@dataclass(frozen=True)
class Tick:
    """One entry of a schedule's recent history."""

    schedule: str
    tick: datetime
    outcome: str
    recorded_at: datetime
    execution_id: str | None = None
    reason: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "tick": tick_text(self.tick),
            "outcome": self.outcome,
            "execution_id": self.execution_id,
            "reason": self.reason,
            "recorded_at": rfc3339(self.recorded_at),
        }


def tick_text(tick: datetime) -> str:
    """RFC 3339 UTC: whole seconds for clock ticks, milliseconds for a trigger's."""
    moment = tick.astimezone(UTC)
    spec = "seconds" if moment.microsecond == 0 else "milliseconds"
    return moment.isoformat(timespec=spec).replace("+00:00", "Z")


def tick_key(name: str, tick: datetime) -> str:
    """The idempotent start key of a tick: one execution per (schedule, tick)."""
    return f"schedule:{name}:{tick_text(tick)}"


def _number_problem(value: Any) -> str | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return "must be a whole number of seconds >= 1"
    if value != value or value in (float("inf"), float("-inf")) or int(value) != value:
        return "must be a whole number of seconds >= 1"
    if value < 1:
        return f"must be >= 1 (got {value})"
    if value > MAX_EVERY_S:
        return f"must be at most {MAX_EVERY_S} (a year)"
    return None


def read_schedule(document: Any, created_at: datetime) -> Schedule:
    """A schedule from its JSON fields (API body, CLI options); every problem at once,
    each located by its field. Cron syntax and time zones are the Calendar's to check."""
    if not isinstance(document, dict):
        raise ValidationError([Problem("body", "must be an object")])
    problems: list[Problem] = []

    def problem(field: str, message: str) -> None:
        problems.append(Problem(field, message))

    for field in sorted(set(document) - set(FIELDS)):
        problem(field, f"unknown field (expected {', '.join(FIELDS)})")
    name, workflow = document.get("name"), document.get("workflow")
    if not isinstance(name, str) or not NAME_RE.match(name):
        problem("name", "required: 1-100 characters of [A-Za-z0-9_.-]")
    if not isinstance(workflow, str) or not NAME_RE.match(workflow):
        problem("workflow", "required: a stored workflow's name")
    version = document.get("version")
    if version is not None and (isinstance(version, bool) or not isinstance(version, int) or not 1 <= version < 2**31):
        problem("version", "must be a version number >= 1")
    cron, every = document.get("cron"), document.get("every_s")
    if (cron is None) == (every is None):
        problem("cron", "give exactly one of cron (a 5-field expression) and every_s (seconds)")
    elif cron is not None and (not isinstance(cron, str) or not cron.strip() or len(cron) > 200):
        problem("cron", "must be a cron expression such as '*/5 * * * *'")
    elif every is not None and (message := _number_problem(every)) is not None:
        problem("every_s", message)
    timezone = document.get("timezone", "UTC")
    if not isinstance(timezone, str) or not timezone or len(timezone) > 64:
        problem("timezone", "must be an IANA time zone name such as 'Europe/Paris'")
    choices = (("overlap", OVERLAPS, "skip"), ("catchup", CATCHUPS, "latest"), ("state", (ACTIVE, PAUSED), ACTIVE))
    for field, allowed, default in choices:
        value = document.get(field, default)
        if value not in allowed:
            problem(field, f"must be one of {', '.join(allowed)} (got {value!r})")
    if problems or not isinstance(name, str) or not isinstance(workflow, str):
        raise ValidationError(problems)
    return Schedule(
        name=name,
        workflow=workflow,
        version=version,
        input=document.get("input", {}),
        cron=cron.strip() if isinstance(cron, str) else None,
        every_s=int(every) if every is not None else None,
        timezone=timezone,
        overlap=document.get("overlap", "skip"),
        catchup=document.get("catchup", "latest"),
        state=document.get("state", ACTIVE),
        created_at=created_at,
    )
