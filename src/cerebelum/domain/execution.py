"""The Execution aggregate and its status state machine (from the seed)."""

from __future__ import annotations

import hashlib
import uuid
from dataclasses import dataclass, field, fields, replace
from datetime import datetime
from typing import Any

from cerebelum.domain.errors import IllegalTransition
from cerebelum.domain.events import rfc3339
from cerebelum.domain.schedules import tick_text


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
    schedule_name: str | None = None  # started by a schedule's tick (spec section 6)
    schedule_tick: datetime | None = None
    signals_sent: int = 0  # signals offered to its inbox (a runner takes them when it has fewer in its log)
    timeout_s: float | None = None  # a deadline given at start (wins over the definition's)
    forked_from: str | None = None  # the execution this one was forked from, and at which sequence
    forked_at: int | None = None
    code_version: str | None = None  # the latest code version that ran it (None: no process ran it yet)
    versioning: str = "upgrade"  # the definition's `versioning`: "pinned" runs only on its code version
    parent_id: str | None = None  # a child: the parent execution and the node that started it
    parent_node: str | None = None
    depth: int = 0  # how deep among children (a top-level execution: 0)
    queue: str = "default"  # flow control (spec section 9): its queue, priority and concurrency key
    priority: int = 500
    concurrency_key: str | None = None
    # When it got its queue slot (its first claim): the queue's bookkeeping, set by the store, so
    # a runner's copy may not know it yet; not part of what makes two rows of it equal.
    first_claimed_at: datetime | None = field(default=None, compare=False)

    def evolve(self, **changes: Any) -> Execution:
        """A copy with `changes`, as `dataclasses.replace` but without running `__init__`
        over every field again: every append of every step makes one."""
        unknown = changes.keys() - _EXECUTION_FIELDS
        if unknown:
            raise TypeError(f"Execution has no field {sorted(unknown)[0]!r}")
        evolved = object.__new__(Execution)
        evolved.__dict__.update(self.__dict__, **changes)
        return evolved

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
            "schedule": {"name": self.schedule_name, "tick": _tick_text(self.schedule_tick)} if self.schedule_name else None,
            "timeout_s": self.timeout_s,
            "forked_from": {"execution_id": self.forked_from, "sequence": self.forked_at} if self.forked_from else None,
            "code_version": self.code_version,
            "versioning": self.versioning,
            "waiting_for_code_version": self.waiting_for_code_version,
            "parent": {"execution_id": self.parent_id, "node": self.parent_node} if self.parent_id else None,
            "queue": self.queue,
            "priority": self.priority,
            "concurrency_key": self.concurrency_key,
        }

    @property
    def waiting_for_code_version(self) -> str | None:
        """A pinned execution that only processes with this code version may continue."""
        live = self.status in (ExecutionStatus.PENDING, ExecutionStatus.RUNNING)
        return self.code_version if live and self.versioning == Versioning.PINNED else None


def _tick_text(tick: datetime | None) -> str | None:
    return tick_text(tick) if tick is not None else None


def node_run_seed(seed: int, path: str, run: int, attempt: int) -> int:
    """The seed of one attempt's random generator: independent of interleaving."""
    material = f"{seed}|{path}|{run}|{attempt}".encode()
    return int.from_bytes(hashlib.sha256(material).digest()[:8], "big")


CHILD_SIGNAL = "cerebelum.child"  # the signal a child's end sends its parent (payload: child, status, output, error)
_CHILDREN = uuid.UUID("6b1f0e4e-3c55-4d5e-9a43-1c9f1e0c2d7a")  # namespace of derived child ids


def child_execution_id(parent_id: str, path: str, run: int) -> str:
    """The one id a node run's child can have: started once however the parent's workers crash."""
    return execution_id_from_uuid(str(uuid.uuid5(_CHILDREN, f"{parent_id}/{path}/{run}")))


def child_seed(parent_seed: int, path: str, run: int) -> int:
    """A child's seed, derived from its parent's (63 bits, like every seed)."""
    return int.from_bytes(hashlib.sha256(f"{parent_seed}|child|{path}|{run}".encode()).digest()[:8], "big") >> 1


def idempotency_key(execution_id: str, path: str, run: int) -> str:
    """Stable across retries and recoveries of the same node run."""
    return f"{execution_id}/{path}/{run}"


class Versioning:
    """A definition's top-level `versioning`: what a process with another code version does."""

    UPGRADE = "upgrade"  # continue, recording code_version_changed first
    PINNED = "pinned"  # leave it to processes with the execution's code version
    ALL = (UPGRADE, PINNED)


_EXECUTION_FIELDS = frozenset(f.name for f in fields(Execution))


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
