"""Ports: what the domain and the use cases need from the outside world.

Each is a small `typing.Protocol`; adapters live in `cerebelum.infrastructure`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any, Protocol

from cerebelum.domain.events import Event
from cerebelum.domain.execution import Execution
from cerebelum.domain.workflow import StoredWorkflow


class CompiledExpression(Protocol):
    """A CEL expression compiled once, at validation time."""

    source: str

    def evaluate(self, activation: Mapping[str, Any]) -> Any:
        """Return a plain JSON value; raise ExpressionError on any failure."""
        ...


class ExpressionCompiler(Protocol):
    def compile(self, source: str) -> CompiledExpression:
        """Raise ExpressionError with a one-line message when `source` is invalid."""
        ...


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


class ExecutionRepository(Protocol):
    def create(self, execution: Execution) -> None: ...

    def get(self, execution_id: str) -> Execution:
        """Raise NotFound for an unknown id."""
        ...

    def list(
        self,
        workflow: str | None = None,
        status: str | None = None,
        limit: int = 50,
        offset: int = 0,
    ) -> list[Execution]:
        """Newest first."""
        ...


class EventStore(Protocol):
    def append(self, execution: Execution, events: Sequence[Event]) -> None:
        """Insert `events` and update the execution row in ONE transaction.

        Raise Conflict if any sequence is already taken: the log is never
        overwritten.
        """
        ...

    def read(self, execution_id: str, start: int = 0, end: int | None = None) -> list[Event]:
        """Events with start <= sequence <= end, in order."""
        ...

    def last_checkpoint(self, execution_id: str) -> Event | None:
        """The latest `checkpoint_created` event, where recovery and replay start."""
        ...


class Store(Protocol):
    """The three repositories of one database, as one adapter set."""

    @property
    def workflows(self) -> WorkflowRepository: ...

    @property
    def executions(self) -> ExecutionRepository: ...

    @property
    def events(self) -> EventStore: ...

    def close(self) -> None: ...
