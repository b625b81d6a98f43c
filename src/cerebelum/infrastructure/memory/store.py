"""In-memory adapters: the same contract as the SQL store, for tests and
throw-away embedded use (`Engine("memory://")`)."""

from __future__ import annotations

import threading
from collections.abc import Sequence

from cerebelum.domain.errors import Conflict, NotFound
from cerebelum.domain.events import Event, EventType
from cerebelum.domain.execution import Execution
from cerebelum.domain.workflow import StoredWorkflow


class MemoryWorkflows:
    def __init__(self, lock: threading.RLock) -> None:
        self._lock = lock
        self._rows: dict[tuple[str, int], StoredWorkflow] = {}

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
                return self._rows[(name, version)]
        suffix = "" if version is None else f" version {version}"
        raise NotFound(f"unknown workflow '{name}'{suffix}")

    def versions(self, name: str) -> list[StoredWorkflow]:
        with self._lock:
            return sorted((w for (n, _), w in self._rows.items() if n == name), key=lambda w: w.version)

    def list(self, name: str | None = None, limit: int = 50, offset: int = 0) -> list[StoredWorkflow]:
        with self._lock:
            rows = [w for w in self._rows.values() if name is None or w.name == name]
        rows.sort(key=lambda w: (w.created_at, w.name, w.version), reverse=True)
        return rows[offset : offset + limit]


class MemoryExecutions:
    def __init__(self, lock: threading.RLock) -> None:
        self._lock = lock
        self.rows: dict[str, Execution] = {}

    def create(self, execution: Execution) -> None:
        with self._lock:
            if execution.id in self.rows:
                raise Conflict(f"execution {execution.id} already exists")
            self.rows[execution.id] = execution

    def get(self, execution_id: str) -> Execution:
        with self._lock:
            if execution_id not in self.rows:
                raise NotFound(f"unknown execution '{execution_id}'")
            return self.rows[execution_id]

    def list(
        self, workflow: str | None = None, status: str | None = None, limit: int = 50, offset: int = 0
    ) -> list[Execution]:
        with self._lock:
            rows = [
                e
                for e in self.rows.values()
                if (workflow is None or e.workflow == workflow) and (status is None or e.status == status)
            ]
        rows.sort(key=lambda e: (e.created_at, e.id), reverse=True)
        return rows[offset : offset + limit]


class MemoryEvents:
    def __init__(self, lock: threading.RLock, executions: MemoryExecutions) -> None:
        self._lock = lock
        self._executions = executions
        self._logs: dict[str, list[Event]] = {}

    def append(self, execution: Execution, events: Sequence[Event]) -> None:
        with self._lock:
            log = self._logs.setdefault(execution.id, [])
            for offset, event in enumerate(events):
                if event.sequence != len(log) + offset:
                    raise Conflict(f"sequence {event.sequence} of {execution.id} is already taken or out of order")
            log.extend(events)
            self._executions.rows[execution.id] = execution

    def last_checkpoint(self, execution_id: str) -> Event | None:
        with self._lock:
            for event in reversed(self._logs.get(execution_id, [])):
                if event.type == EventType.CHECKPOINT_CREATED:
                    return event
        return None

    def read(self, execution_id: str, start: int = 0, end: int | None = None) -> list[Event]:
        with self._lock:
            log = self._logs.get(execution_id, [])
            return log[start : None if end is None else end + 1]


class MemoryStore:
    """All three repositories over plain dicts, behind one lock."""

    def __init__(self) -> None:
        lock = threading.RLock()
        self.workflows = MemoryWorkflows(lock)
        self.executions = MemoryExecutions(lock)
        self.events = MemoryEvents(lock, self.executions)

    def close(self) -> None:
        pass
