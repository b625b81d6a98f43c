"""The Execution aggregate and its status state machine (from the seed)."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

from cerebelum.domain.errors import IllegalTransition
from cerebelum.domain.events import rfc3339


class ExecutionStatus:
    PENDING = "pending"
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"
    PAUSED = "paused"

    ALL = (PENDING, RUNNING, COMPLETED, FAILED, PAUSED)
    TERMINAL = frozenset({COMPLETED, FAILED})
    TRANSITIONS: dict[str, frozenset[str]] = {
        PENDING: frozenset({RUNNING, FAILED}),  # pending -> failed: cancelled before it started
        RUNNING: frozenset({COMPLETED, FAILED, PAUSED}),
        PAUSED: frozenset({RUNNING, FAILED}),
        COMPLETED: frozenset(),
        FAILED: frozenset(),
    }

    @classmethod
    def check(cls, current: str, target: str) -> None:
        """Raise IllegalTransition unless current -> target is allowed."""
        if target not in cls.TRANSITIONS.get(current, frozenset()):
            raise IllegalTransition(f"cannot go from {current} to {target}")


EXECUTION_ID_PREFIX = "exec-"


def execution_id_from_uuid(uuid_text: str) -> str:
    return EXECUTION_ID_PREFIX + uuid_text


def is_execution_id(value: object) -> bool:
    return isinstance(value, str) and value.startswith(EXECUTION_ID_PREFIX)


def seed_from_id(execution_id: str) -> int:
    """A stable 63-bit seed derived from the execution id (never Python's salted hash)."""
    return int.from_bytes(hashlib.sha256(execution_id.encode()).digest()[:8], "big") >> 1


@dataclass(frozen=True)
class Execution:
    """The execution row: a projection of the event log, kept for queries."""

    id: str
    workflow: str
    version: int
    status: str
    input: Any
    seed: int
    virtual_time: bool
    created_at: datetime
    output: Any = None
    error: dict[str, Any] | None = None
    started_at: datetime | None = None
    completed_at: datetime | None = None
    last_sequence: int = -1
    control: str | None = None  # a requested pause / resume / cancel, not yet acted on
    key: str | None = None  # the caller's idempotency key: one execution per key (spec section 5)
    queue: str = "default"  # flow control (spec section 9): its queue, priority and concurrency key
    priority: int = 500
    concurrency_key: str | None = None
    # When it got its queue slot (its first claim): the queue's bookkeeping, set by the store, so
    # a runner's copy may not know it yet; not part of what makes two rows of it equal.
    first_claimed_at: datetime | None = field(default=None, compare=False)

    def evolve(self, **changes: Any) -> Execution:
        return replace(self, **changes)

    def transition(self, target: str) -> Execution:
        ExecutionStatus.check(self.status, target)
        return replace(self, status=target)

    @property
    def is_terminal(self) -> bool:
        return self.status in ExecutionStatus.TERMINAL

    def to_json(self) -> dict[str, Any]:
        """The shape of `status --json`, `run --json` and the HTTP API."""
        return {
            "execution_id": self.id,
            "workflow": self.workflow,
            "version": self.version,
            "status": self.status,
            "input": self.input,
            "output": self.output,
            "error": self.error,
            "seed": self.seed,
            "virtual_time": self.virtual_time,
            "created_at": rfc3339(self.created_at),
            "started_at": rfc3339(self.started_at) if self.started_at else None,
            "completed_at": rfc3339(self.completed_at) if self.completed_at else None,
            "last_sequence": self.last_sequence,
            "requested": self.control,
            "key": self.key,
            "queue": self.queue,
            "priority": self.priority,
            "concurrency_key": self.concurrency_key,
        }


def node_run_seed(seed: int, path: str, run: int, attempt: int) -> int:
    """The seed of one attempt's random generator: independent of interleaving."""
    material = f"{seed}|{path}|{run}|{attempt}".encode()
    return int.from_bytes(hashlib.sha256(material).digest()[:8], "big")


def idempotency_key(execution_id: str, path: str, run: int) -> str:
    """Stable across retries and recoveries of the same node run."""
    return f"{execution_id}/{path}/{run}"


class Control:
    """Requests written to the execution row, acted on by whoever holds the lease."""

    PAUSE = "pause"
    RESUME = "resume"
    CANCEL = "cancel"
    ALL = (PAUSE, RESUME, CANCEL)


@dataclass(frozen=True)
class Lease:
    """The right to advance one execution, until `expires_at`; `token` fences writes."""

    execution_id: str
    owner: str
    token: str
    expires_at: datetime
