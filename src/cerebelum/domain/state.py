"""fold(events) -> ExecutionState: any state of an execution, at any sequence.

The fold is the only place that interprets events; the orchestrator reads
the state it builds, the stores project it into the execution row, and time
travel is a fold of a prefix of the log.
"""

from __future__ import annotations

import copy
from collections.abc import Collection, Iterable
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any

from cerebelum.domain.errors import IllegalTransition
from cerebelum.domain.events import Event, EventType, parse_rfc3339
from cerebelum.domain.execution import CHILD_SIGNAL, ExecutionStatus
from cerebelum.domain.nodes import is_top_level


class NodeStatus:
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"


@dataclass
class NodeRun:
    """One run of a node at a path (a loop re-runs a top-level node: `run` counts)."""

    path: str
    run: int
    status: str = NodeStatus.RUNNING
    attempt: int = 1
    not_before: datetime | None = None  # when the next attempt is due
    output: Any = None
    error: dict[str, Any] | None = None
    fires_at: datetime | None = None  # delay timer, once started
    fired: bool = False
    items: list[Any] | None = None  # map items, recorded when the map starts
    clock: datetime | None = None  # virtual clock: at start, then at the end
    waits_for: str | None = None  # a wait node: the signal's name
    child: str | None = None  # a workflow node: the id of the child execution it starts


@dataclass
class ExecutionState:
    """Everything the orchestrator needs, rebuilt from the log alone."""

    execution_id: str = ""
    workflow: str = ""
    version: int = 0
    status: str = ExecutionStatus.PENDING
    input: Any = None
    seed: int = 0
    virtual_time: bool = False
    started_at: datetime | None = None
    completed_at: datetime | None = None
    output: Any = None
    error: dict[str, Any] | None = None
    results: dict[str, Any] = field(default_factory=dict)
    data: Any = None
    current: str | None = None  # the active top-level node
    runs: dict[str, int] = field(default_factory=dict)
    edge_counts: dict[int, int] = field(default_factory=dict)
    nodes: dict[str, NodeRun] = field(default_factory=dict)
    clock: datetime | None = None  # virtual clock of the top-level path
    sequence: int = -1
    # Signals in arrival order: {sequence, name, payload, key, id, consumed_by} (id: the inbox row's)
    signals: list[dict[str, Any]] = field(default_factory=list)
    deadline: datetime | None = None  # the whole execution's, on its own clock
    deadline_passed: bool = False
    depth: int = 0  # among child executions (a top-level one: 0)

    def next_signal(self, name: str, skip: Collection[int] = ()) -> dict[str, Any] | None:
        """The earliest signal of `name` not consumed yet (nor among `skip`, sequences taken meanwhile)."""
        for signal in self.signals:
            if signal["name"] == name and signal["consumed_by"] is None and signal["sequence"] not in skip:
                return signal
        return None

    def child_outcome(self, child_id: str, skip: Collection[int] = ()) -> dict[str, Any] | None:
        """The unconsumed signal that says how this child ended, if it came."""
        for signal in self.signals:
            payload = signal["payload"]
            if (
                signal["name"] == CHILD_SIGNAL
                and signal["consumed_by"] is None
                and signal["sequence"] not in skip
                and isinstance(payload, dict)
                and payload.get("child") == child_id
            ):
                return signal
        return None

    def delivered_ids(self) -> set[int]:
        """Inbox ids of the signals already in the log."""
        return {s["id"] for s in self.signals if isinstance(s.get("id"), int)}
    code_version: str | None = None  # the code version running it now (docs/deploys.md)

    @property
    def is_terminal(self) -> bool:
        return self.status in ExecutionStatus.TERMINAL

    def copy(self) -> ExecutionState:
        return copy.deepcopy(self)

    def to_json(self) -> dict[str, Any]:
        """A JSON view (time travel, checkpoints, the API)."""
        raw = asdict(self)
        raw["edge_counts"] = {str(k): v for k, v in self.edge_counts.items()}
        return _jsonable(raw)  # type: ignore[no-any-return]

    @classmethod
    def from_json(cls, raw: dict[str, Any]) -> ExecutionState:
        raw = copy.deepcopy(raw)  # the state is mutated as events apply: never alias a checkpoint's payload
        state = cls(**{k: v for k, v in raw.items() if k not in ("nodes", "edge_counts")})
        for key in ("started_at", "completed_at", "clock", "deadline"):
            value = getattr(state, key)
            setattr(state, key, parse_rfc3339(value) if value else None)
        state.edge_counts = {int(k): v for k, v in raw.get("edge_counts", {}).items()}
        for path, node in raw.get("nodes", {}).items():
            run = NodeRun(**node)
            for key in ("not_before", "fires_at", "clock"):
                value = getattr(run, key)
                setattr(run, key, parse_rfc3339(value) if value else None)
            state.nodes[path] = run
        return state


def _jsonable(value: Any) -> Any:
    if isinstance(value, datetime):  # full precision: a checkpoint must restore the exact state
        return value.isoformat().replace("+00:00", "Z")
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_jsonable(v) for v in value]
    return value


def _time(payload: dict[str, Any], key: str) -> datetime | None:
    value = payload.get(key)
    return parse_rfc3339(value) if value else None


def _consume(state: ExecutionState, payload: dict[str, Any], path: str) -> None:
    """A wait took this signal, or a workflow node its child's end."""
    if "signal" in payload:
        for signal in state.signals:
            if signal["sequence"] == payload["signal"]:
                signal["consumed_by"] = path


def _transition(state: ExecutionState, target: str) -> None:
    ExecutionStatus.check(state.status, target)
    state.status = target


def apply(state: ExecutionState, event: Event) -> ExecutionState:
    """Apply one event in place (and return the state, for folding)."""
    if event.sequence != state.sequence + 1:
        raise IllegalTransition(f"event {event.sequence} does not follow {state.sequence}: the log has a gap")
    state.sequence = event.sequence
    p = event.payload
    kind = event.type
    path = event.node_id
    if kind == EventType.EXECUTION_STARTED:
        _transition(state, ExecutionStatus.RUNNING)
        state.execution_id = event.execution_id
        state.workflow = p["workflow"]
        state.version = p["version"]
        state.input = p["input"]
        state.data = p["input"]
        state.seed = p["seed"]
        state.virtual_time = p["clock"] == "virtual"
        state.started_at = event.timestamp
        state.clock = parse_rfc3339(p["started_at"])
        state.deadline = _time(p, "deadline")
        state.depth = p.get("depth", 0)
        state.code_version = p.get("code_version")
    elif kind == EventType.NODE_STARTED:
        assert path is not None
        if is_top_level(path):
            state.current = path
            state.runs[path] = p["run"]
            prefixes = (path + ".", path + "[")
            for key in [k for k in state.nodes if k.startswith(prefixes)]:
                del state.nodes[key]
        state.nodes[path] = NodeRun(
            path=path, run=p["run"], items=p.get("items"), clock=_time(p, "clock"), waits_for=p.get("signal"),
            child=p.get("child"),
        )
    elif kind == EventType.NODE_COMPLETED:
        assert path is not None
        run = state.nodes[path]
        run.status = NodeStatus.COMPLETED
        run.output = p.get("output")
        run.clock = _time(p, "clock") or run.clock
        _consume(state, p, path)
        if is_top_level(path):
            state.results[path] = run.output
            state.data = run.output
            state.clock = run.clock or state.clock
    elif kind == EventType.ATTEMPT_FAILED:
        assert path is not None
        run = state.nodes[path]
        run.attempt = p["attempt"] + 1
        run.not_before = _time(p, "retry_at")
        run.clock = _time(p, "clock") or run.clock
    elif kind in (EventType.NODE_FAILED, EventType.NODE_CANCELLED):
        assert path is not None
        run = state.nodes[path]
        run.status = NodeStatus.FAILED if kind == EventType.NODE_FAILED else NodeStatus.CANCELLED
        run.error = p.get("error")
        _consume(state, p, path)
        if is_top_level(path) and run.clock is not None and (state.clock is None or run.clock > state.clock):
            state.clock = run.clock  # an error edge goes on from when it failed (a wait's timeout, say)
    elif kind == EventType.TIMER_STARTED:
        assert path is not None
        state.nodes[path].fires_at = _time(p, "fires_at")
    elif kind == EventType.TIMER_FIRED and path is None:  # the execution's deadline
        state.deadline_passed = True
    elif kind == EventType.TIMER_FIRED:
        assert path is not None
        run = state.nodes[path]
        run.fired = True
        run.clock = _time(p, "clock") or run.clock
    elif kind == EventType.EDGE_TAKEN:
        edge = p["edge"]
        state.edge_counts[edge] = state.edge_counts.get(edge, 0) + 1
        if p.get("on") == "error":
            state.data = p.get("error")  # the next node sees the failure as its data; results keep no entry
    elif kind == EventType.EXECUTION_PAUSED:
        _transition(state, ExecutionStatus.PAUSED)
        state.error = p.get("error")  # why it paused, when it was not asked to (drift)
    elif kind == EventType.EXECUTION_RESUMED:
        _transition(state, ExecutionStatus.RUNNING)
        state.error = None
    elif kind == EventType.EXECUTION_COMPLETED:
        _transition(state, ExecutionStatus.COMPLETED)
        state.output = p.get("output")
        state.completed_at = event.timestamp
    elif kind == EventType.EXECUTION_FAILED:
        _transition(state, ExecutionStatus.FAILED)
        state.error = p.get("error")
        state.completed_at = event.timestamp
    elif kind == EventType.SIGNAL_RECEIVED:
        state.signals.append(
            {"sequence": event.sequence, "name": p["name"], "payload": p.get("payload"), "key": p.get("key"),
             "id": p.get("id"), "consumed_by": None}
        )
    elif kind == EventType.CODE_VERSION_CHANGED:
        state.code_version = p.get("to")
    elif kind == EventType.CHECKPOINT_CREATED:
        pass  # a checkpoint repeats the state; folding it changes nothing
    else:
        raise IllegalTransition(f"unknown event type {kind!r} at sequence {event.sequence}")
    return state


def fold(events: Iterable[Event], state: ExecutionState | None = None) -> ExecutionState:
    """The state after `events`, starting from `state` (a checkpoint) or from nothing."""
    state = state if state is not None else ExecutionState()
    for event in events:
        apply(state, event)
    return state
