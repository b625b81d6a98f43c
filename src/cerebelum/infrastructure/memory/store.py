"""In-memory adapters: the same contract as the SQL store, for tests and
throw-away embedded use (`Engine("memory://")`)."""

from __future__ import annotations

import builtins
import copy
import threading
from collections import Counter
from collections.abc import Collection, Sequence
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

from cerebelum.domain.errors import Conflict, LeaseLost, NotFound
from cerebelum.domain.events import Event, EventType
from cerebelum.domain.execution import Execution, ExecutionStatus, Lease, Versioning
from cerebelum.domain.history import different_definition
from cerebelum.domain.ports import Append, AppendResult, EventStamp, InboxSignal, Offered, PurgeSelection
from cerebelum.domain.queues import QueueSettings, QueueStats
from cerebelum.domain.schedules import Schedule, Tick
from cerebelum.domain.workflow import StoredWorkflow
from cerebelum.infrastructure.deterministic.interception import REAL_DATETIME, REAL_UUID4


class MemoryWorkflows:
    def __init__(self, lock: threading.RLock) -> None:
        self._lock = lock
        self._rows: dict[tuple[str, int], StoredWorkflow] = {}
        self.deleted: set[tuple[str, int]] = set()
        self._executions: MemoryExecutions | None = None  # set by MemoryStore: delete checks them

    def add(self, workflow: StoredWorkflow) -> StoredWorkflow:
        with self._lock:
            key = (workflow.name, workflow.version)
            if key in self._rows:
                raise Conflict(f"workflow {workflow.name} version {workflow.version} already exists")
            self._rows[key] = workflow
            return workflow

    def get(self, name: str, version: int | None = None) -> StoredWorkflow:
        with self._lock:
            if version is None:
                versions = self.versions(name)
                if versions:
                    return versions[-1]
            elif (name, version) in self._rows:
                stored = self._rows[(name, version)]
                return replace(stored, deleted=True) if (name, version) in self.deleted else stored
        suffix = "" if version is None else f" version {version}"
        raise NotFound(f"unknown workflow '{name}'{suffix}")

    def versions(self, name: str) -> list[StoredWorkflow]:
        with self._lock:
            live = (w for key, w in self._rows.items() if key[0] == name and key not in self.deleted)
            return sorted(live, key=lambda w: w.version)

    def list(self, name: str | None = None, limit: int = 50, offset: int = 0) -> list[StoredWorkflow]:
        with self._lock:
            rows = [w for k, w in self._rows.items() if (name is None or w.name == name) and k not in self.deleted]
        rows.sort(key=lambda w: (w.created_at, w.name, w.version), reverse=True)
        return rows[offset : offset + limit]

    def delete(self, name: str, version: int) -> None:
        with self._lock:
            if (name, version) not in self._rows or (name, version) in self.deleted:
                raise NotFound(f"unknown workflow '{name}' version {version}")
            live = [
                e
                for e in (self._executions.rows.values() if self._executions else ())
                if e.workflow == name and e.version == version and not e.is_terminal
            ]
            if live:
                raise Conflict(f"workflow {name} version {version} has {len(live)} execution(s) still running")
            self.deleted.add((name, version))


class MemoryExecutions:
    def __init__(self, lock: threading.RLock) -> None:
        self._lock = lock
        self.rows: dict[str, Execution] = {}
        self.claims: dict[str, Lease] = {}
        self.workflows: MemoryWorkflows | None = None  # set by MemoryStore: a start may store its new version
        self.wake: dict[str, datetime] = {}
        self.log: MemoryEvents | None = None  # set by MemoryStore: a fork brings its first events; purged with the row
        self.inbox: dict[str, list[InboxSignal]] | None = None  # set by MemoryStore: signals, purged with the row

    def create(self, execution: Execution, workflow: StoredWorkflow | None = None) -> None:
        with self._lock:
            if execution.id in self.rows:
                raise Conflict(f"execution {execution.id} already exists")
            if execution.key is not None and self.find_by_key(execution.key) is not None:
                raise Conflict(f"key '{execution.key}' is taken")
            if workflow is not None:
                assert self.workflows is not None
                self.workflows.add(workflow)  # under the same lock: both or neither
            self.rows[execution.id] = execution

    def find_by_key(self, key: str) -> Execution | None:
        with self._lock:
            return next((row for row in self.rows.values() if row.key == key), None)

    def create_with_history(self, execution: Execution, events: Sequence[Event]) -> None:
        with self._lock:
            self.create(execution)
            assert self.log is not None
            self.log.logs[execution.id] = list(events)

    def get(self, execution_id: str) -> Execution:
        with self._lock:
            if execution_id not in self.rows:
                raise NotFound(f"unknown execution '{execution_id}'")
            return self.rows[execution_id]

    def list(
        self,
        workflow: str | None = None,
        status: str | Collection[str] | None = None,
        limit: int = 50,
        offset: int = 0,
        parent: str | None = None,
    ) -> list[Execution]:
        statuses = None if status is None else {status} if isinstance(status, str) else set(status)
        with self._lock:
            rows = [
                e
                for e in self.rows.values()
                if (workflow is None or e.workflow == workflow)
                and (statuses is None or e.status in statuses)
                and (parent is None or e.parent_id == parent)
            ]
        rows.sort(key=lambda e: (e.created_at, e.id), reverse=True)
        return rows[offset : offset + limit]

    def _purgeable(self, selection: PurgeSelection) -> builtins.list[str]:
        statuses = selection.statuses & ExecutionStatus.TERMINAL
        parents = {e.parent_id for e in self.rows.values() if e.parent_id is not None and not e.is_terminal}
        return [
            e.id
            for e in self.rows.values()
            if e.status in statuses
            and e.completed_at is not None
            and e.completed_at < selection.ended_before
            and (selection.workflow is None or e.workflow == selection.workflow)
            and e.id not in parents  # never the parent of an unfinished child
        ]

    def count_purgeable(self, selection: PurgeSelection) -> int:
        with self._lock:
            return len(self._purgeable(selection))

    def purge_batch(self, selection: PurgeSelection, limit: int) -> int:
        with self._lock:
            chosen = self._purgeable(selection)[: max(0, limit)]
            for execution_id in chosen:
                del self.rows[execution_id]
                self.claims.pop(execution_id, None)
                self.wake.pop(execution_id, None)
                if self.log is not None:
                    self.log.logs.pop(execution_id, None)
                if self.inbox is not None:
                    self.inbox.pop(execution_id, None)
            return len(chosen)

    def import_history(self, execution: Execution, events: Sequence[Event], workflow: StoredWorkflow) -> StoredWorkflow:
        assert self.workflows is not None and self.log is not None
        with self._lock:
            if execution.id in self.rows:
                raise Conflict(f"execution {execution.id} already exists in this database")
            if execution.key is not None and self.find_by_key(execution.key) is not None:
                raise Conflict(f"execution {execution.id}'s key '{execution.key}' is taken")
            stored = self.workflows._rows.get((workflow.name, workflow.version))
            if stored is not None and stored.digest != workflow.digest:
                raise Conflict(different_definition(workflow))
            if stored is None:
                stored = self.workflows.add(workflow)
            self.rows[execution.id] = execution
            self.log.logs[execution.id] = list(events)
            return stored


class MemoryEvents:
    def __init__(self, lock: threading.RLock, executions: MemoryExecutions) -> None:
        self._lock = lock
        self._executions = executions
        self.logs: dict[str, list[Event]] = {}

    def append(
        self,
        execution: Execution,
        events: Sequence[Event],
        lease: Lease | None = None,
        consumed_control: str | None = None,
    ) -> str | None:
        with self._lock:
            if execution.id not in self._executions.rows:
                raise NotFound(f"unknown execution '{execution.id}'")
            claim = self._executions.claims.get(execution.id)
            if lease is not None and (claim is None or claim.token != lease.token):
                raise LeaseLost(f"lease on {execution.id} was lost; another worker holds it")
            log = self.logs.setdefault(execution.id, [])
            for offset, event in enumerate(events):
                if event.sequence != len(log) + offset:
                    raise Conflict(f"sequence {event.sequence} of {execution.id} is already taken or out of order")
            log.extend(events)
            control = self._executions.rows[execution.id].control
            if consumed_control is not None and control == consumed_control:
                control = None
            if execution.is_terminal:
                control = None
                self._executions.claims.pop(execution.id, None)
                self._executions.wake.pop(execution.id, None)
            stored = self._executions.rows[execution.id]  # the senders' count and the queue's bookkeeping: not the runner's
            kept = {"signals_sent": stored.signals_sent, "first_claimed_at": stored.first_claimed_at}
            self._executions.rows[execution.id] = execution.evolve(control=control, **kept)
            return control

    def loop_writer(self) -> None:
        return None  # appends are in-process already

    def append_many(self, appends: Sequence[Append]) -> list[AppendResult]:
        results: list[AppendResult] = []
        for one in appends:
            try:
                results.append(self.append(one.execution, one.events, one.lease, one.consumed_control))
            except (Conflict, LeaseLost, NotFound) as refusal:
                results.append(refusal)
        return results

    def last_checkpoint(self, execution_id: str) -> Event | None:
        with self._lock:
            for event in reversed(self.logs.get(execution_id, [])):
                if event.type == EventType.CHECKPOINT_CREATED:
                    return event
        return None

    def read(self, execution_id: str, start: int = 0, end: int | None = None) -> list[Event]:
        with self._lock:
            log = self.logs.get(execution_id, [])
            return log[start : None if end is None else end + 1]


class MemoryQueues:
    """Queue settings (spec section 9)."""

    def __init__(self, lock: threading.RLock, executions: MemoryExecutions) -> None:
        self._lock = lock
        self._x = executions
        self._rows: dict[str, QueueSettings] = {}

    def put(self, settings: QueueSettings) -> QueueSettings:
        with self._lock:
            self._rows[settings.name] = replace(settings, updated_at=_now())
            return self._rows[settings.name]

    def get(self, name: str) -> QueueSettings | None:
        with self._lock:
            return self._rows.get(name)

    def all(self) -> list[QueueSettings]:
        with self._lock:
            return [self._rows[name] for name in sorted(self._rows)]

    def delete(self, name: str) -> None:
        with self._lock:
            if self._rows.pop(name, None) is None:
                raise NotFound(f"queue '{name}' has no settings")

    def limited(self, name: str) -> QueueSettings | None:
        settings = self._rows.get(name)
        return settings if settings is not None and settings.limited else None

    def all_limited(self) -> list[QueueSettings]:
        return [s for s in self.all() if s.limited]

    def stats(self, names: Collection[str] | None = None) -> dict[str, QueueStats]:
        found: dict[str, QueueStats] = {}
        with self._lock:
            for e in self._x.rows.values():
                if (names is not None and e.queue not in names) or e.is_terminal:
                    continue
                before = found.get(e.queue, QueueStats())
                if e.first_claimed_at is not None:
                    found[e.queue] = replace(before, running=before.running + 1)
                elif e.status != ExecutionStatus.PAUSED:
                    oldest = min(before.oldest_waiting or e.created_at, e.created_at)
                    found[e.queue] = replace(before, waiting=before.waiting + 1, oldest_waiting=oldest)
        return found

    def admitted_since(self, since: datetime, limit: int = 10_000) -> list[tuple[str, datetime, datetime]]:
        with self._lock:
            rows = [(e.queue, e.created_at, e.first_claimed_at) for e in self._x.rows.values() if e.first_claimed_at is not None]
        return sorted((r for r in rows if r[2] > since), key=lambda r: r[2])[:limit]


class MemoryQueue:
    def __init__(self, lock: threading.RLock, executions: MemoryExecutions, settings: MemoryQueues) -> None:
        self._lock = lock
        self._x = executions
        self.settings = settings

    def _held(self, execution_id: str, now: datetime) -> bool:
        claim = self._x.claims.get(execution_id)
        return claim is not None and claim.expires_at >= now

    def _grant(self, execution_id: str, owner: str, ttl: float, now: datetime) -> Lease:
        lease = Lease(execution_id, owner, str(REAL_UUID4()), now + timedelta(seconds=ttl))
        self._x.claims[execution_id] = lease
        return lease

    def _admit(self, execution_id: str, now: datetime) -> Execution:
        """It holds a slot of its queue from now on (if it did not already)."""
        execution = self._x.rows[execution_id]
        if execution.first_claimed_at is None:
            execution = self._x.rows[execution_id] = execution.evolve(first_claimed_at=now)
        return execution

    def create_leased(self, execution: Execution, owner: str, ttl: float, workflow: StoredWorkflow | None = None) -> Lease | None:
        with self._lock:
            if self.settings.limited(execution.queue) is not None:
                self._x.create(execution, workflow)  # it waits for a slot like any other
                return None
            self._x.create(execution.evolve(first_claimed_at=_now()), workflow)
            return self._grant(execution.id, owner, ttl, _now())

    def _due(self, now: datetime, queues: Collection[str] | None, code_version: str | None = None) -> list[Execution]:
        due = [
            e
            for e in self._x.rows.values()
            if e.status in (ExecutionStatus.PENDING, ExecutionStatus.RUNNING)
            and not self._held(e.id, now)
            and self._x.wake.get(e.id, now) <= now
            and (queues is None or e.queue in queues)
            and _runs_here(e, code_version)
        ]
        due.sort(key=lambda e: (e.priority, self._x.wake.get(e.id, e.created_at), e.id))
        return due

    def claim(
        self, owner: str, limit: int, ttl: float, code_version: str | None = None, queues: Collection[str] | None = None
    ) -> list[tuple[Execution, Lease]]:
        now = _now()
        with self._lock:
            due = self._due(now, queues, code_version)
            chosen: list[Execution] = []
            for settings in self.settings.all_limited():  # limited queues first, as the SQL claim
                waiting = [e for e in due if e.queue == settings.name and e.first_claimed_at is None]
                chosen += self._admissible(settings, waiting, now, limit - len(chosen))
            plain = [e for e in due if e.first_claimed_at is not None or self.settings.limited(e.queue) is None]
            chosen += plain[: max(0, limit - len(chosen))]
            claimed = []
            for execution in chosen:
                self._x.wake.pop(execution.id, None)
                claimed.append((self._admit(execution.id, now), self._grant(execution.id, owner, ttl, now)))
            return claimed

    def _admissible(self, settings: QueueSettings, waiting: list[Execution], now: datetime, most: int) -> list[Execution]:
        """As `infrastructure/sql/admission.py`: within concurrency, rate and per-key bounds."""
        holding = [e for e in self._x.rows.values() if e.queue == settings.name and e.first_claimed_at and not e.is_terminal]
        room = most
        if settings.concurrency is not None:
            room = min(room, settings.concurrency - len(holding))
        if settings.rate is not None:
            since = now - timedelta(seconds=settings.rate.period_s)
            rows = self._x.rows.values()
            recent = sum(1 for e in rows if e.queue == settings.name and e.first_claimed_at and e.first_claimed_at >= since)
            room = min(room, settings.rate.count - recent)
        per_key = Counter(e.concurrency_key for e in holding if e.concurrency_key is not None)
        chosen: list[Execution] = []
        for execution in waiting:
            if len(chosen) >= room:
                break
            key = execution.concurrency_key
            if key is not None and settings.per_key_concurrency is not None:
                if per_key[key] >= settings.per_key_concurrency:
                    continue
                per_key[key] += 1
            chosen.append(execution)
        return chosen

    def claim_one(self, execution_id: str, owner: str, ttl: float, admit: bool = False) -> Lease | None:
        now = _now()
        with self._lock:
            execution = self._x.get(execution_id)
            if execution.is_terminal or self._held(execution_id, now):
                return None
            if admit and execution.first_claimed_at is None:
                settings = self.settings.limited(execution.queue)
                if settings is not None:
                    waiting = [e for e in self._due(now, [execution.queue]) if e.first_claimed_at is None]
                    if execution.id not in {e.id for e in self._admissible(settings, waiting, now, len(waiting))}:
                        return None
                self._admit(execution_id, now)
            return self._grant(execution_id, owner, ttl, now)

    def renew(self, leases: Sequence[Lease], ttl: float) -> list[tuple[Lease, str | None, int]]:
        expires = _now() + timedelta(seconds=ttl)
        held: list[tuple[Lease, str | None, int]] = []
        with self._lock:
            for lease in leases:
                claim = self._x.claims.get(lease.execution_id)
                if claim is not None and claim.token == lease.token:
                    renewed = Lease(lease.execution_id, lease.owner, lease.token, expires)
                    self._x.claims[lease.execution_id] = renewed
                    row = self._x.rows[lease.execution_id]
                    held.append((renewed, row.control, row.signals_sent))
        return held

    def release(self, lease: Lease, wake_at: datetime | None = None, note: dict[str, Any] | None = None) -> None:
        with self._lock:
            claim = self._x.claims.get(lease.execution_id)
            if claim is None or claim.token != lease.token:
                return
            del self._x.claims[lease.execution_id]
            if note is not None:
                self._x.rows[lease.execution_id] = self._x.get(lease.execution_id).evolve(error=note)
            if wake_at is not None:
                self._x.wake[lease.execution_id] = wake_at
            else:
                self._x.wake.pop(lease.execution_id, None)

    def wake(self, execution_id: str) -> None:
        with self._lock:
            self._x.wake.pop(execution_id, None)

    def request(self, execution_id: str, control: str) -> Execution:
        with self._lock:
            execution = self._x.get(execution_id).evolve(control=control)
            self._x.rows[execution_id] = execution
            return execution

    def per_code_version(self) -> dict[tuple[str | None, str], int]:
        counts: dict[tuple[str | None, str], int] = {}
        with self._lock:
            for e in self._x.rows.values():
                if not e.is_terminal:
                    counts[(e.code_version, e.versioning)] = counts.get((e.code_version, e.versioning), 0) + 1
        return counts

    def counts(self) -> dict[str, int]:
        now = _now()
        with self._lock:
            counts = {status: 0 for status in ExecutionStatus.ALL}
            for execution in self._x.rows.values():
                counts[execution.status] += 1
            counts["parked"] = sum(1 for moment in self._x.wake.values() if moment > now)
            counts["leased"] = sum(1 for claim in self._x.claims.values() if claim.expires_at >= now)
            counts["expired"] = sum(1 for claim in self._x.claims.values() if claim.expires_at < now)
            return counts


class MemorySchedules:
    """Schedules and their recent ticks, for `memory://` (they fire in this process only)."""

    KEEP_TICKS = 100

    def __init__(self, lock: threading.RLock, executions: MemoryExecutions) -> None:
        self._lock = lock
        self._x = executions
        self._rows: dict[str, Schedule] = {}
        self._ticks: dict[str, dict[datetime, Tick]] = {}

    def add(self, schedule: Schedule) -> None:
        with self._lock:
            if schedule.name in self._rows:
                raise Conflict(f"schedule '{schedule.name}' already exists")
            self._rows[schedule.name] = schedule
            self._ticks[schedule.name] = {}

    def get(self, name: str) -> Schedule:
        with self._lock:
            if name not in self._rows:
                raise NotFound(f"unknown schedule '{name}'")
            return self._rows[name]

    def all(self, state: str | None = None) -> list[Schedule]:
        with self._lock:
            return [self._rows[n] for n in sorted(self._rows) if state is None or self._rows[n].state == state]

    def update(self, schedule: Schedule) -> bool:
        with self._lock:
            if self.get(schedule.name).revision != schedule.revision:
                return False
            self._rows[schedule.name] = schedule.evolve(revision=schedule.revision + 1)
            return True

    def delete(self, name: str) -> None:
        with self._lock:
            self.get(name)
            del self._rows[name]
            del self._ticks[name]

    def record(self, tick: Tick) -> bool:
        with self._lock:
            ticks = self._ticks.get(tick.schedule)
            if ticks is None or tick.tick in ticks:
                return False
            ticks[tick.tick] = tick
            for old in sorted(ticks)[: -self.KEEP_TICKS]:
                del ticks[old]
            return True

    def ticks(self, name: str, limit: int = 20) -> list[Tick]:
        with self._lock:
            ticks = self._ticks.get(name, {})
            return [ticks[t] for t in sorted(ticks, reverse=True)[:limit]]

    def latest_execution(self, name: str) -> Execution | None:
        with self._lock:
            mine = [e for e in self._x.rows.values() if e.schedule_name == name]
        return max(mine, key=lambda e: (e.created_at, e.id)) if mine else None


def _runs_here(execution: Execution, code_version: str | None) -> bool:
    """A pinned execution is claimed only by its own code version (docs/deploys.md)."""
    pinned = execution.versioning == Versioning.PINNED and execution.code_version is not None
    return not pinned or execution.code_version == code_version


def _now() -> datetime:
    return REAL_DATETIME.now(UTC)


class MemorySignals:
    def __init__(self, lock: threading.RLock, executions: MemoryExecutions) -> None:
        self._lock = lock
        self._x = executions
        self._rows: dict[str, list[InboxSignal]] = {}
        self._next = 1

    def offer(
        self, execution_id: str, name: str, payload: Any, key: str | None, now: datetime, stamp: EventStamp | None = None
    ) -> Offered:
        with self._lock:
            execution = self._x.get(execution_id)
            inbox = self._rows.setdefault(execution_id, [])
            for signal in inbox:
                if key is not None and signal.key == key:  # a repeated key gets the first one, even once it ended
                    return Offered(signal.id, True)
            if execution.is_terminal:
                raise Conflict(f"execution {execution_id} is {execution.status}: it takes no more signals")
            signal = InboxSignal(self._next, name, copy.deepcopy(payload), key)
            self._next += 1
            inbox.append(signal)
            execution = execution.evolve(signals_sent=execution.signals_sent + 1)
            self._x.rows[execution_id] = execution
            claim = self._x.claims.get(execution_id)
            held = claim is not None and claim.expires_at >= now
            if stamp is None or held or execution.last_sequence < 0 or execution.control is not None:
                return Offered(signal.id, False)
            assert self._x.log is not None  # nobody holds it: into the log at once, and claimable now
            event = signal.received(execution_id, execution.last_sequence + 1, execution.version, stamp)
            self._x.log.logs.setdefault(execution_id, []).append(event)
            self._x.rows[execution_id] = execution.evolve(last_sequence=event.sequence)
            self._x.claims.pop(execution_id, None)
            self._x.wake.pop(execution_id, None)
            return Offered(signal.id, False, event)

    def pending(self, execution_id: str, delivered: Collection[int]) -> list[InboxSignal]:
        with self._lock:
            return [s for s in self._rows.get(execution_id, []) if s.id not in delivered]

    def sequence_of(self, execution_id: str, signal_id: int) -> int | None:
        with self._lock:
            assert self._x.log is not None
            for event in self._x.log.logs.get(execution_id, []):
                if event.type == EventType.SIGNAL_RECEIVED and event.payload.get("id") == signal_id:
                    return event.sequence
        return None


class MemoryStore:
    """All the repositories over plain dicts, behind one lock."""

    def __init__(self) -> None:
        lock = threading.RLock()
        self.workflows = MemoryWorkflows(lock)
        self.executions = MemoryExecutions(lock)
        self.workflows._executions = self.executions
        self.executions.workflows = self.workflows
        self.events = MemoryEvents(lock, self.executions)
        self.queues = MemoryQueues(lock, self.executions)
        self.queue = MemoryQueue(lock, self.executions, self.queues)
        self.schedules = MemorySchedules(lock, self.executions)
        self.executions.log = self.events
        self.signals = MemorySignals(lock, self.executions)
        self.executions.inbox = self.signals._rows

    def close(self) -> None:
        pass
