"""Time travel: the state of an execution at any sequence, as a fold of its log prefix."""

from __future__ import annotations

from typing import Any

from cerebelum.domain.events import rfc3339
from cerebelum.domain.ports import EventStore
from cerebelum.domain.state import ExecutionState, NodeStatus, fold


def state_at(events: EventStore, execution_id: str, sequence: int | None) -> ExecutionState:
    """Fold events 0..sequence (all of them when None)."""
    return fold(events.read(execution_id, 0, sequence))


def describe_state(state: ExecutionState) -> dict[str, Any]:
    """The user-facing view: status, results, data, position and pending timers."""
    raw = state.to_json()
    running = [path for path, run in state.nodes.items() if run.status == NodeStatus.RUNNING]
    timers = [
        {"node_id": path, "fires_at": rfc3339(run.fires_at)}
        for path, run in state.nodes.items()
        if run.fires_at is not None and not run.fired and run.status == NodeStatus.RUNNING
    ]
    retries = [
        {"node_id": path, "attempt": run.attempt, "due_at": rfc3339(run.not_before)}
        for path, run in state.nodes.items()
        if run.not_before is not None and run.status == NodeStatus.RUNNING
    ]
    waiting = [
        {"node_id": path, "signal": run.waits_for}
        for path, run in state.nodes.items()
        if run.waits_for is not None and run.status == NodeStatus.RUNNING
    ]
    return {
        "execution_id": state.execution_id,
        "sequence": state.sequence,
        "status": state.status,
        "workflow": state.workflow,
        "version": state.version,
        "input": state.input,
        "results": state.results,
        "data": state.data,
        "output": state.output,
        "error": state.error,
        "position": {"current": state.current, "running": running},
        "pending_timers": timers,
        "pending_retries": retries,
        "waiting_for_signals": waiting,
        "signals": [
            {"sequence": s["sequence"], "name": s["name"], "payload": s["payload"], "key": s["key"],
             "consumed_by": s["consumed_by"]}
            for s in state.signals
        ],
        "deadline": rfc3339(state.deadline) if state.deadline else None,
        "virtual_clock": raw["clock"] if state.virtual_time else None,
        "nodes": raw["nodes"],
    }
