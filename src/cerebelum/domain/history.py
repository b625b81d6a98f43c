"""Portable histories: one execution as a self-contained JSON bundle.

A bundle holds the definition of the version the execution ran, the
execution row and every event, so it can be imported into another database
or replayed with no database at all (docs/histories.md). Reading one checks
every field and reports each problem with its location (`events.3.sequence`),
so a corrupted or truncated bundle is refused before anything is written.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from cerebelum.domain.errors import Problem, ValidationError
from cerebelum.domain.events import Event, EventType, parse_rfc3339, rfc3339
from cerebelum.domain.execution import Execution, ExecutionStatus
from cerebelum.domain.limits import configured
from cerebelum.domain.values import locate_value_problem
from cerebelum.domain.workflow import StoredWorkflow, content_digest

FORMAT = "cerebelum.history"
FORMAT_VERSION = 1


@dataclass(frozen=True)
class HistoryBundle:
    """What a bundle holds: the stored version that ran, the row, the log."""

    workflow: StoredWorkflow
    execution: Execution
    events: tuple[Event, ...]

    def to_json(self, exported_at: datetime, engine_version: str | None) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "exported_at": rfc3339(exported_at),
            "engine_version": engine_version,
            "workflow": {
                "name": self.workflow.name,
                "version": self.workflow.version,
                "digest": self.workflow.digest,
                "created_at": rfc3339(self.workflow.created_at),
                "definition": self.workflow.definition,
            },
            "execution": self.execution.to_json(),
            "events": [{"id": event.id, **event.to_json()} for event in self.events],
        }


def different_definition(workflow: StoredWorkflow) -> str:
    """Why an import is refused when (name, version) is stored with another digest."""
    return (
        f"workflow {workflow.name} version {workflow.version} is stored here with another definition "
        f"(the bundle's digest is {workflow.digest[:12]}...): its executions cannot share that version"
    )


class _Reader:
    """Collects every problem of a document instead of stopping at the first."""

    def __init__(self) -> None:
        self.problems: list[Problem] = []

    def problem(self, location: str, message: str) -> None:
        self.problems.append(Problem(location, message))

    def obj(self, value: Any, location: str) -> dict[str, Any] | None:
        if not isinstance(value, dict):
            self.problem(location, f"must be an object, got {_kind(value)}")
            return None
        return value

    def field(
        self, parent: dict[str, Any], key: str, location: str, kinds: tuple[type, ...], optional: bool = False, longest: int = 0
    ) -> Any:
        where = f"{location}.{key}" if location else key
        if key not in parent:
            if not optional:
                self.problem(where, "is missing")
            return None
        value = parent[key]
        if value is None and optional:
            return None
        ok = isinstance(value, kinds) and not (isinstance(value, bool) and bool not in kinds)
        if not ok:
            self.problem(where, f"must be {' or '.join(_NAMES[k] for k in kinds)}, got {_kind(value)}")
            return None
        if longest and isinstance(value, str) and not 0 < len(value) <= longest:
            self.problem(where, f"must be 1-{longest} characters, got {len(value)}")
            return None
        return value

    def value(self, value: Any, location: str) -> None:
        """A stored value must be storable JSON on every backend (values.py)."""
        found = locate_value_problem(value, configured().max_value_depth, location)
        if found is not None:
            self.problem(found[0], found[1])

    def time(self, parent: dict[str, Any], key: str, location: str, optional: bool = False) -> datetime | None:
        text = self.field(parent, key, location, (str,), optional)
        if text is None:
            return None
        try:
            moment = parse_rfc3339(text)
        except ValueError:
            moment = None
        if moment is None or moment.tzinfo is None:
            self.problem(f"{location}.{key}", f"must be an RFC 3339 UTC time, got {text!r}")
            return None
        return moment


_NAMES: dict[type, str] = {str: "a string", int: "an integer", bool: "a boolean", dict: "an object", list: "a list"}


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    return {bool: "a boolean", int: "an integer", float: "a number", str: "a string", list: "a list", dict: "an object"}.get(
        type(value), type(value).__name__
    )


def read_bundle(document: Any) -> HistoryBundle:
    """The bundle in `document` (parsed JSON); ValidationError with every problem, located."""
    r = _Reader()
    top = r.obj(document, "bundle")
    if top is None:
        raise ValidationError(r.problems)
    if top.get("format") != FORMAT:
        r.problem("format", f"must be {FORMAT!r}: this is not a Cerebelum history bundle")
        raise ValidationError(r.problems)
    version = r.field(top, "format_version", "", (int,))
    if version is not None and version != FORMAT_VERSION:
        r.problem("format_version", f"{version} is not supported (this Cerebelum reads version {FORMAT_VERSION})")
        raise ValidationError(r.problems)
    workflow = _workflow(r, top.get("workflow"))
    execution = _execution(r, top.get("execution"))
    events = _events(r, top.get("events"), execution)
    ran = (execution.workflow, execution.version) if execution is not None else None
    if workflow is not None and ran is not None and ran != (workflow.name, workflow.version):
        r.problem("execution.workflow", f"{ran[0]} v{ran[1]} is not the bundle's workflow {workflow.name} v{workflow.version}")
    if r.problems or workflow is None or execution is None or events is None:
        raise ValidationError(r.problems)
    received = sum(1 for event in events if event.type == EventType.SIGNAL_RECEIVED)  # the row's count, as the log shows
    return HistoryBundle(workflow, execution.evolve(signals_sent=received), tuple(events))


def _workflow(r: _Reader, raw: Any) -> StoredWorkflow | None:
    body = r.obj(raw, "workflow")
    if body is None:
        return None
    name = r.field(body, "name", "workflow", (str,), longest=100)
    version = r.field(body, "version", "workflow", (int,))
    definition = r.field(body, "definition", "workflow", (dict,))
    digest = r.field(body, "digest", "workflow", (str,))
    created_at = r.time(body, "created_at", "workflow")
    if isinstance(version, int) and version < 1:
        r.problem("workflow.version", f"must be at least 1, got {version}")
        return None
    if definition is not None and digest is not None and content_digest(definition) != digest:
        r.problem("workflow.digest", "does not match the definition: the bundle was changed after it was exported")
        return None
    if None in (name, version, definition, digest, created_at):
        return None
    return StoredWorkflow("", name, version, definition, digest, created_at)  # type: ignore[arg-type]


def _execution(r: _Reader, raw: Any) -> Execution | None:
    body = r.obj(raw, "execution")
    if body is None:
        return None
    at = "execution"
    before = len(r.problems)
    execution_id = r.field(body, "execution_id", at, (str,), longest=64)
    status = r.field(body, "status", at, (str,))
    if status is not None and status not in ExecutionStatus.ALL:
        r.problem(f"{at}.status", f"unknown status {status!r} (one of {', '.join(ExecutionStatus.ALL)})")
    values = {
        "workflow": r.field(body, "workflow", at, (str,), longest=100),
        "version": r.field(body, "version", at, (int,)),
        "seed": r.field(body, "seed", at, (int,)),
        "virtual_time": r.field(body, "virtual_time", at, (bool,)),
        "created_at": r.time(body, "created_at", at),
        "started_at": r.time(body, "started_at", at, optional=True),
        "completed_at": r.time(body, "completed_at", at, optional=True),
        "last_sequence": r.field(body, "last_sequence", at, (int,)),
        "error": r.field(body, "error", at, (dict,), optional=True),
        "key": r.field(body, "key", at, (str,), optional=True, longest=200),
        "code_version": r.field(body, "code_version", at, (str,), optional=True, longest=64),
    }
    versioning = r.field(body, "versioning", at, (str,), optional=True)
    if versioning is not None and versioning not in ("upgrade", "pinned"):
        r.problem(f"{at}.versioning", f"must be upgrade or pinned, got {versioning!r}")
    values["versioning"] = versioning or "upgrade"
    r.value(values["seed"], f"{at}.seed")
    timeout_s = r.field(body, "timeout_s", at, (int, float), optional=True)
    if timeout_s is not None and not (math.isfinite(timeout_s) and timeout_s > 0):
        r.problem(f"{at}.timeout_s", f"must be a number of seconds above 0, got {timeout_s!r}")
    forked = r.obj(body["forked_from"], f"{at}.forked_from") if body.get("forked_from") is not None else None
    if forked is not None:
        values["forked_from"] = r.field(forked, "execution_id", f"{at}.forked_from", (str,), longest=64)
        values["forked_at"] = r.field(forked, "sequence", f"{at}.forked_from", (int,))
    schedule = r.obj(body["schedule"], f"{at}.schedule") if body.get("schedule") is not None else None
    if schedule is not None:  # the schedule tick that started it (interaction spec section 6)
        values["schedule_name"] = r.field(schedule, "name", f"{at}.schedule", (str,), longest=100)
        values["schedule_tick"] = r.time(schedule, "tick", f"{at}.schedule")
    for key in ("input", "output"):
        if key not in body:
            r.problem(f"{at}.{key}", "is missing")
    for key in ("input", "output", "error"):
        r.value(body.get(key), f"{at}.{key}")
    if len(r.problems) > before:
        return None
    values["timeout_s"] = float(timeout_s) if timeout_s is not None else None
    return Execution(id=execution_id, status=status, input=body["input"], output=body["output"], **values)


def _events(r: _Reader, raw: Any, execution: Execution | None) -> list[Event] | None:
    if not isinstance(raw, list):
        r.problem("events", f"must be a list, got {_kind(raw)}")
        return None
    events: list[Event] = []
    execution_id = execution.id if execution is not None else ""
    for index, item in enumerate(raw):
        at = f"events.{index}"
        body = r.obj(item, at)
        if body is None:
            continue
        before = len(r.problems)
        event_id = r.field(body, "id", at, (str,), longest=36)
        sequence = r.field(body, "sequence", at, (int,))
        kind = r.field(body, "type", at, (str,), longest=32)
        node_id = r.field(body, "node_id", at, (str,), optional=True, longest=512)
        payload = r.field(body, "payload", at, (dict,))
        timestamp = r.time(body, "timestamp", at)
        engine_version = r.field(body, "engine_version", at, (str,), optional=True, longest=32)
        workflow_version = r.field(body, "workflow_version", at, (int,), optional=True)
        code_version = r.field(body, "code_version", at, (str,), optional=True, longest=64)
        r.value(payload, f"{at}.payload")
        if sequence is not None and sequence != index:
            r.problem(f"{at}.sequence", f"must be {index}: the log is contiguous from 0 (events missing or reordered)")
        if len(r.problems) == before:
            event = Event(
                event_id, execution_id, sequence, kind, node_id, payload, timestamp,  # type: ignore[arg-type]
                engine_version, workflow_version, code_version,
            )  # fmt: skip
            events.append(event)
    if execution is not None and execution.last_sequence != len(raw) - 1:
        r.problem(
            "events",
            f"{len(raw)} event(s) but execution.last_sequence is {execution.last_sequence}: the bundle is truncated or edited",
        )
    return events
