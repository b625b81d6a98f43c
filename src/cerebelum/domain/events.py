"""Event types of the append-only execution log (catalogue: docs/events.md)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any


class EventType:
    """The event type names, as stored. The seed's seven come first."""

    EXECUTION_STARTED = "execution_started"
    NODE_STARTED = "node_started"
    NODE_COMPLETED = "node_completed"
    NODE_FAILED = "node_failed"
    EXECUTION_COMPLETED = "execution_completed"
    EXECUTION_FAILED = "execution_failed"
    CHECKPOINT_CREATED = "checkpoint_created"
    # added by the semantics (spec section 7)
    ATTEMPT_FAILED = "attempt_failed"
    TIMER_STARTED = "timer_started"
    TIMER_FIRED = "timer_fired"
    EDGE_TAKEN = "edge_taken"
    NODE_CANCELLED = "node_cancelled"
    EXECUTION_PAUSED = "execution_paused"
    EXECUTION_RESUMED = "execution_resumed"
    # interaction (interaction.md): a signal delivered to the execution
    SIGNAL_RECEIVED = "signal_received"
    # code versions and safe deploys (interaction spec section 10)
    CODE_VERSION_CHANGED = "code_version_changed"


@dataclass(frozen=True)
class NewEvent:
    """An event decided or observed but not yet numbered."""

    type: str
    node_id: str | None
    payload: dict[str, Any]


@dataclass(frozen=True)
class Event:
    """One entry of an execution's log. `sequence` is contiguous from 0."""

    id: str
    execution_id: str
    sequence: int
    type: str
    node_id: str | None
    payload: dict[str, Any]
    timestamp: datetime
    engine_version: str | None = None  # version stamps: who wrote the event
    workflow_version: int | None = None
    code_version: str | None = None  # the code version of the process that wrote it (docs/deploys.md)

    def to_json(self) -> dict[str, Any]:
        """The shape of `events --json` and the HTTP API."""
        return {
            "sequence": self.sequence,
            "type": self.type,
            "node_id": self.node_id,
            "payload": self.payload,
            "timestamp": rfc3339(self.timestamp),
            "engine_version": self.engine_version,
            "workflow_version": self.workflow_version,
            "code_version": self.code_version,
        }


def rfc3339(moment: datetime) -> str:
    """UTC, millisecond precision, with a Z."""
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def parse_rfc3339(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))
