"""Ports: what the domain and the use cases need from the outside world.

Each is a small `typing.Protocol`; adapters live in `cerebelum.infrastructure`.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from cerebelum.domain.events import Event, EventType
from cerebelum.domain.execution import Execution, ExecutionStatus, Lease
from cerebelum.domain.expressions import CompiledExpression as CompiledExpression  # re-exported: a port too
from cerebelum.domain.expressions import ExpressionCompiler as ExpressionCompiler
from cerebelum.domain.queues import QueueSettings, QueueStats
from cerebelum.domain.schedules import Schedule, Tick
from cerebelum.domain.workflow import StoredWorkflow


class Clock(Protocol):
    """Wall-clock time, for event timestamps and real-time timers."""

    def now(self) -> datetime: ...

    def sleep(self, seconds: float) -> None:
        """Block this thread (real time; never intercepted)."""
        ...


class IdSource(Protocol):
    def new_id(self) -> str:
        """A fresh uuid4 string."""
        ...


class WorkflowRepository(Protocol):
    def add(self, workflow: StoredWorkflow) -> StoredWorkflow:
        """Store a new version; raise Conflict if (name, version) is taken."""
        ...

    def get(self, name: str, version: int | None = None) -> StoredWorkflow:
        """The given version, or the latest live one; raise NotFound."""
        ...

    def versions(self, name: str) -> list[StoredWorkflow]:
        """Every live version of `name`, oldest first."""
        ...

    def list(self, name: str | None = None, limit: int = 50, offset: int = 0) -> list[StoredWorkflow]:
        """Live workflows, newest first."""
        ...

    def delete(self, name: str, version: int) -> None:
        """Soft delete: hidden from lists and new executions, kept for the executions
        that reference it. NotFound if unknown; Conflict while any of them is not terminal."""
        ...


@dataclass(frozen=True, slots=True)
class PurgeSelection:
    """Which executions a purge deletes: terminal ones (of `statuses`, a subset
    of the terminal statuses) that ended before `ended_before`, of `workflow` if given."""

    ended_before: datetime
    statuses: frozenset[str] = ExecutionStatus.TERMINAL
    workflow: str | None = None


class ExecutionRepository(Protocol):
    def create(self, execution: Execution, workflow: StoredWorkflow | None = None) -> None:
        """Insert the row; with `workflow`, that new version too, in the same
        transaction (Conflict if its name and version are taken)."""
        ...

    def find_by_key(self, key: str) -> Execution | None:
        """The execution started with this idempotency key, if any."""
        ...

    def create_with_history(self, execution: Execution, events: Sequence[Event]) -> None:
        """A fork: the row and its first events in one transaction, claimable once committed."""
        ...

    def get(self, execution_id: str) -> Execution:
        """Raise NotFound for an unknown id."""
        ...

    def list(
        self,
        workflow: str | None = None,
        status: str | Collection[str] | None = None,
        limit: int = 50,
        offset: int = 0,
        parent: str | None = None,
    ) -> list[Execution]:
        """Newest first; `status`: one status or any of several; `parent`: the children of that execution."""
        ...

    def count_purgeable(self, selection: PurgeSelection) -> int:
        """How many executions `purge_batch` would delete in all (a dry run)."""
        ...

    def purge_batch(self, selection: PurgeSelection, limit: int) -> int:
        """Delete up to `limit` of the selected executions (in no set order), with
        their events (checkpoints included), in ONE short transaction; return how
        many. The statement itself checks that each row is terminal, so an
        execution that is not (or not yet) is never deleted, whatever races it."""
        ...

    def import_history(self, execution: Execution, events: Sequence[Event], workflow: StoredWorkflow) -> StoredWorkflow:
        """Insert an execution recorded elsewhere with its events, in one transaction,
        with its workflow version unless (name, version) is stored with the same
        digest (returned: the stored one). Conflict if the id (or its key) exists
        or if (name, version) is stored with another digest; nothing is written then."""
        ...


@dataclass(frozen=True, slots=True)
class Append:
    """One execution's new events and its new row, as `EventStore.append` takes them."""

    execution: Execution
    events: Sequence[Event]
    lease: Lease | None = None
    consumed_control: str | None = None


# What one append of a batch came to: the pending control request, or the
# refusal (Conflict, LeaseLost, NotFound) of that append alone.
AppendResult = str | None | Exception


class LoopWriter(Protocol):
    """Appends batches from inside one event loop, with a driver's async I/O:
    no thread between the loop and the database on the hot path."""

    async def append_many(self, appends: Sequence[Append]) -> list[AppendResult]:
        """As `EventStore.append_many`."""
        ...

    async def close(self) -> None: ...


class EventStore(Protocol):
    def append(
        self,
        execution: Execution,
        events: Sequence[Event],
        lease: Lease | None = None,
        consumed_control: str | None = None,
    ) -> str | None:
        """Insert `events` and update the execution row in ONE transaction.

        Raise Conflict if any sequence is already taken (the log is never
        overwritten) and LeaseLost if `lease` no longer holds the execution.
        `consumed_control` clears the row's control request if it is still
        that one. Returns the request still pending (pause / resume / cancel).
        """
        ...

    def append_many(self, appends: Sequence[Append]) -> list[AppendResult]:
        """Group commit: several executions' appends in one transaction.

        Each append is checked and refused on its own (its result is then the
        exception `append` would raise) without undoing the others; every
        accepted one is durable when this returns. A failure of the database
        itself (StoreUnavailable) is raised for the whole batch.
        """
        ...

    def loop_writer(self) -> LoopWriter | None:
        """A writer for the running event loop, or None: append from a thread."""
        ...

    def read(self, execution_id: str, start: int = 0, end: int | None = None) -> list[Event]:
        """Events with start <= sequence <= end, in order."""
        ...

    def last_checkpoint(self, execution_id: str) -> Event | None:
        """The latest `checkpoint_created` event, where recovery and replay start."""
        ...


class ExecutionQueue(Protocol):
    """Executions as work: claimed with a lease, renewed by heartbeat, released."""

    def create_leased(self, execution: Execution, owner: str, ttl: float, workflow: StoredWorkflow | None = None) -> Lease | None:
        """Create the execution row already claimed by `owner` (runs in-process);
        `workflow` as for `ExecutionRepository.create`. If its queue has limits
        the row is created unclaimed instead (None): it waits for a slot."""
        ...

    def claim(
        self, owner: str, limit: int, ttl: float, code_version: str | None = None, queues: Collection[str] | None = None
    ) -> list[tuple[Execution, Lease]]:
        """Claim up to `limit` due executions (pending, or running with a lapsed
        lease, or parked with `wake_at` passed), lowest priority number first,
        then oldest; a pinned one only if its code version is `code_version` (or
        it has none yet); of `queues` only, if given. An execution that never had
        a slot of a limited queue is claimed only if the queue's limits allow it
        now (spec section 9); the claim gives it its slot."""
        ...

    def per_code_version(self) -> dict[tuple[str | None, str], int]:
        """Executions not ended, per (code version, versioning): the gauge that says when old workers may stop."""
        ...

    def claim_one(self, execution_id: str, owner: str, ttl: float, admit: bool = False) -> Lease | None:
        """Claim this execution if nobody holds it (any non-terminal status).
        `admit`: to run it, so it needs (and takes) a slot of its queue, as `claim`."""
        ...

    def renew(self, leases: Sequence[Lease], ttl: float) -> list[tuple[Lease, str | None, int]]:
        """Extend the leases still held, with each one's pending control request and
        count of signals offered; the ones missing from the result are lost."""
        ...

    def release(self, lease: Lease, wake_at: datetime | None = None, note: dict[str, Any] | None = None) -> None:
        """Give the execution back; `wake_at`: not claimable before then (a parked timer);
        `note`: why it was left, shown as the row's error until a runner writes it again."""
        ...

    def request(self, execution_id: str, control: str) -> Execution:
        """Record a pause / resume / cancel request for the lease holder."""
        ...

    def wake(self, execution_id: str) -> None:
        """A parked execution is due now (its child ended): claimable at once, idle workers told."""
        ...

    def counts(self) -> dict[str, int]:
        """Executions per status, plus `parked`, `leased` and `expired` leases (metrics, benchmarks)."""
        ...


class Calendar(Protocol):
    """Tick arithmetic of schedules: cron expressions in a time zone, or every N seconds."""

    def problems(self, schedule: Schedule) -> list[tuple[str, str]]:
        """(field, message) for a cron expression or time zone this calendar cannot use."""
        ...

    def following(self, schedule: Schedule, after: datetime, count: int) -> list[datetime]:
        """The next `count` ticks strictly after `after` (UTC)."""
        ...

    def due(self, schedule: Schedule, after: datetime, until: datetime, limit: int) -> list[datetime]:
        """The latest `limit` ticks in (after, until], oldest first (UTC)."""
        ...


class ScheduleRepository(Protocol):
    def add(self, schedule: Schedule) -> None:
        """Store a new schedule; Conflict if its name is taken."""
        ...

    def get(self, name: str) -> Schedule:
        """Raise NotFound for an unknown name."""
        ...

    def all(self, state: str | None = None) -> list[Schedule]:
        """Every schedule (or those in `state`), by name."""
        ...

    def update(self, schedule: Schedule) -> bool:
        """Compare-and-set: write the row if its revision is still `schedule.revision`
        (the stored revision becomes one more); False if another writer came first.
        NotFound if the schedule is gone."""
        ...

    def delete(self, name: str) -> None:
        """The schedule and its history (its executions stay); NotFound if unknown."""
        ...

    def record(self, tick: Tick) -> bool:
        """Add a history entry, keeping the latest ones only; False if that tick is recorded already."""
        ...

    def ticks(self, name: str, limit: int = 20) -> list[Tick]:
        """Recent history, newest first."""
        ...

    def latest_execution(self, name: str) -> Execution | None:
        """The execution this schedule started last (overlap `skip` waits for its end)."""
        ...


@dataclass(frozen=True, slots=True)
class EventStamp:
    """Who writes an event and when: what a store needs to append one for the writer."""

    id: str
    timestamp: datetime
    engine_version: str | None
    code_version: str | None
    origin: str | None = None  # the writing process's lease owner name: listeners there drop the echo


@dataclass(frozen=True, slots=True)
class InboxSignal:
    """A signal offered to an execution, not yet (or already) moved into its log."""

    id: int
    name: str
    payload: Any
    key: str | None

    def received_payload(self) -> dict[str, Any]:
        """The payload of its `signal_received` event: one shape, whoever appends it."""
        return {"name": self.name, "payload": self.payload, "key": self.key, "id": self.id}

    def received(self, execution_id: str, sequence: int, workflow_version: int, stamp: EventStamp) -> Event:
        """Its `signal_received` event, appended by a store for `stamp`'s writer."""
        return Event(
            stamp.id, execution_id, sequence, EventType.SIGNAL_RECEIVED, None, self.received_payload(),
            stamp.timestamp, stamp.engine_version, workflow_version, stamp.code_version,
        )  # fmt: skip


@dataclass(frozen=True, slots=True)
class Offered:
    """A signal kept in the inbox; `event`: its `signal_received`, when the store
    appended it at once (nobody held the execution); else its holder will."""

    id: int
    repeated: bool  # the key was used before: `id` is the first signal's, nothing new was kept
    event: Event | None = None


class SignalInbox(Protocol):
    """Signals wait here until whoever holds the execution appends them to its log."""

    def offer(
        self, execution_id: str, name: str, payload: Any, key: str | None, now: datetime, stamp: EventStamp | None = None
    ) -> Offered:
        """Keep the signal and count it on the execution row, in one transaction; for a
        key already used on this execution, the first one's id and `repeated`. With a
        `stamp`, when no lease is held, the log has begun and no pause/resume/cancel
        request waits on the row, also append its
        `signal_received` (the next sequence) and make the execution claimable now, in
        the same transaction: the sender needs no lease and no replay. NotFound for
        an unknown execution, Conflict for a terminal one."""
        ...

    def pending(self, execution_id: str, delivered: Collection[int]) -> list[InboxSignal]:
        """The execution's signals whose id is not in `delivered`, in arrival order."""
        ...

    def sequence_of(self, execution_id: str, signal_id: int) -> int | None:
        """The sequence of the `signal_received` event of that signal, once in the log."""
        ...


class QueueRepository(Protocol):
    """Queue settings (spec section 9); a queue without settings is unlimited."""

    def put(self, settings: QueueSettings) -> QueueSettings:
        """Create or replace a queue's settings."""
        ...

    def get(self, name: str) -> QueueSettings | None: ...

    def all(self) -> list[QueueSettings]:
        """Every queue with settings, by name."""
        ...

    def delete(self, name: str) -> None:
        """Forget a queue's settings (it is unlimited then); NotFound if it has none."""
        ...

    def stats(self, names: Collection[str] | None = None) -> dict[str, QueueStats]:
        """Executions waiting for a slot and holding one, per queue that has any."""
        ...

    def admitted_since(self, since: datetime, limit: int = 10_000) -> list[tuple[str, datetime, datetime]]:
        """(queue, created_at, first_claimed_at) of executions that got their slot after `since`, oldest first."""
        ...


class Store(Protocol):
    """The repositories of one database, as one adapter set."""

    @property
    def workflows(self) -> WorkflowRepository: ...

    @property
    def executions(self) -> ExecutionRepository: ...

    @property
    def events(self) -> EventStore: ...

    @property
    def queue(self) -> ExecutionQueue: ...

    @property
    def schedules(self) -> ScheduleRepository: ...

    @property
    def signals(self) -> SignalInbox: ...

    @property
    def queues(self) -> QueueRepository: ...

    def close(self) -> None: ...
