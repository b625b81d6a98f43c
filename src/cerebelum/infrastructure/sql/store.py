"""The SQL adapters of the store ports: SQLite or PostgreSQL, one schema.

Same contract as `cerebelum.infrastructure.memory.store`: same ordering, same
NotFound messages, Conflict on duplicates; the log is never overwritten.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from datetime import datetime

from sqlalchemy import func, insert, select, update
from sqlalchemy.engine import Engine

from cerebelum.domain.errors import Conflict, NotFound
from cerebelum.domain.events import Event, EventType
from cerebelum.domain.execution import Execution, ExecutionStatus, Lease
from cerebelum.domain.ports import (
    Append,
    AppendResult,
    EventStore,
    ExecutionQueue,
    ExecutionRepository,
    LoopWriter,
    PurgeSelection,
    QueueRepository,
    ScheduleRepository,
    SignalInbox,
    WorkflowRepository,
)
from cerebelum.domain.workflow import StoredWorkflow
from cerebelum.infrastructure.sql import histories, schema
from cerebelum.infrastructure.sql.appends import PgLoopWriter, append_many
from cerebelum.infrastructure.sql.database import Database, utc_now
from cerebelum.infrastructure.sql.migrate import ensure_current
from cerebelum.infrastructure.sql.queue import SqlQueue
from cerebelum.infrastructure.sql.queues import SqlQueues
from cerebelum.infrastructure.sql.rows import (
    event_from_row,
    event_values,
    execution_from_row,
    execution_values,
    workflow_from_row,
)
from cerebelum.infrastructure.sql.schedules import SqlSchedules
from cerebelum.infrastructure.sql.signals import SqlSignals
from cerebelum.infrastructure.sql.starts import StartStatements

_W, _X, _E = schema.workflows, schema.executions, schema.events


def _now() -> datetime:
    # Only for updated_at, a bookkeeping column the domain never reads.
    return utc_now()


class SqlWorkflows:
    def __init__(self, db: Database, starts: StartStatements) -> None:
        self._db = db
        self._starts = starts

    def add(self, workflow: StoredWorkflow) -> StoredWorkflow:
        conflict = f"workflow {workflow.name} version {workflow.version} already exists"
        with self._db.write(conflict) as connection:
            connection.execute(
                insert(_W).values(
                    id=workflow.id,
                    name=workflow.name,
                    version=workflow.version,
                    definition=workflow.definition,
                    digest=workflow.digest,
                    created_at=workflow.created_at,
                )
            )
        return workflow

    def get(self, name: str, version: int | None = None) -> StoredWorkflow:
        # An explicit version resolves even if deleted: running executions still need it.
        return self._starts.workflow(name, version)

    def versions(self, name: str) -> list[StoredWorkflow]:
        query = select(_W).where(_W.c.name == name, _W.c.deleted_at.is_(None)).order_by(_W.c.version.asc())
        with self._db.read() as connection:
            return [workflow_from_row(row) for row in connection.execute(query)]

    def list(self, name: str | None = None, limit: int = 50, offset: int = 0) -> list[StoredWorkflow]:
        query = select(_W).where(_W.c.deleted_at.is_(None))
        if name is not None:
            query = query.where(_W.c.name == name)
        query = query.order_by(_W.c.created_at.desc(), _W.c.name.desc(), _W.c.version.desc())
        with self._db.read() as connection:
            return [workflow_from_row(row) for row in connection.execute(query.limit(limit).offset(offset))]

    def delete(self, name: str, version: int) -> None:
        with self._db.write() as connection:
            live = connection.execute(
                select(func.count()).where(
                    _X.c.workflow == name,
                    _X.c.version == version,
                    _X.c.status.notin_(tuple(ExecutionStatus.TERMINAL)),
                )
            ).scalar()
            if live:
                raise Conflict(f"workflow {name} version {version} has {live} execution(s) still running")
            done = connection.execute(
                update(_W).where(_W.c.name == name, _W.c.version == version, _W.c.deleted_at.is_(None)).values(deleted_at=_now())
            ).rowcount
        if not done:
            raise NotFound(f"unknown workflow '{name}' version {version}")


class SqlExecutions:
    def __init__(self, db: Database, starts: StartStatements) -> None:
        self._db = db
        self._starts = starts

    def create(self, execution: Execution, workflow: StoredWorkflow | None = None) -> None:
        self._starts.insert(execution, None, tell=True, workflow=workflow)

    def get(self, execution_id: str) -> Execution:
        with self._db.read() as connection:
            row = connection.execute(select(_X).where(_X.c.id == execution_id)).first()
        if row is None:
            raise NotFound(f"unknown execution '{execution_id}'")
        return execution_from_row(row)

    def find_by_key(self, key: str) -> Execution | None:
        with self._db.read() as connection:
            row = connection.execute(select(_X).where(_X.c.start_key == key)).first()
        return execution_from_row(row) if row is not None else None

    def create_with_history(self, execution: Execution, events: Sequence[Event]) -> None:
        with self._db.write(f"execution {execution.id} already exists") as connection:
            connection.execute(insert(_X).values(**execution_values(execution, _now())))
            if events:
                connection.execute(insert(_E), [event_values(e) for e in events])
            self._db.notify_queue(connection, execution.id)

    def list(
        self,
        workflow: str | None = None,
        status: str | Collection[str] | None = None,
        limit: int = 50,
        offset: int = 0,
        parent: str | None = None,
    ) -> list[Execution]:
        query = select(_X)
        if workflow is not None:
            query = query.where(_X.c.workflow == workflow)
        if parent is not None:
            query = query.where(_X.c.parent_id == parent)
        if isinstance(status, str):
            query = query.where(_X.c.status == status)
        elif status is not None:
            query = query.where(_X.c.status.in_(sorted(status)))
        query = query.order_by(_X.c.created_at.desc(), _X.c.id.desc()).limit(limit).offset(offset)
        with self._db.read() as connection:
            return [execution_from_row(row) for row in connection.execute(query)]

    def count_purgeable(self, selection: PurgeSelection) -> int:
        return histories.count_purgeable(self._db, selection)

    def purge_batch(self, selection: PurgeSelection, limit: int) -> int:
        return histories.purge_batch(self._db, selection, limit)

    def import_history(self, execution: Execution, events: Sequence[Event], workflow: StoredWorkflow) -> StoredWorkflow:
        return histories.import_history(self._db, execution, events, workflow)


class SqlEvents:
    def __init__(self, db: Database) -> None:
        self._db = db

    def append(
        self,
        execution: Execution,
        events: Sequence[Event],
        lease: Lease | None = None,
        consumed_control: str | None = None,
    ) -> str | None:
        """Insert the batch and update the execution row atomically.

        The row's update carries every check: its `last_sequence` must be the
        one just before the batch (so a taken sequence or a gap is refused
        before anything is written), and with a `lease` its token must still
        be ours (fencing). The UNIQUE (execution_id, sequence) key is the last
        line of defence. See `appends` for the statements.
        """
        (result,) = self.append_many([Append(execution, events, lease, consumed_control)])
        if isinstance(result, Exception):
            raise result
        return result

    def append_many(self, appends: Sequence[Append]) -> list[AppendResult]:
        return append_many(self._db, appends)

    def loop_writer(self) -> LoopWriter | None:
        """PostgreSQL: appends on an async connection in the loop. SQLite's driver
        has no async I/O (and its writes are local): appends go to a thread."""
        return PgLoopWriter(self._db) if self._db.is_postgresql else None

    def last_checkpoint(self, execution_id: str) -> Event | None:
        query = (
            select(_E)
            .where(_E.c.execution_id == execution_id, _E.c.type == EventType.CHECKPOINT_CREATED)
            .order_by(_E.c.sequence.desc())
            .limit(1)
        )
        with self._db.read() as connection:
            row = connection.execute(query).first()
        return event_from_row(row) if row is not None else None

    def read(self, execution_id: str, start: int = 0, end: int | None = None) -> list[Event]:
        query = select(_E).where(_E.c.execution_id == execution_id, _E.c.sequence >= start)
        if end is not None:
            query = query.where(_E.c.sequence <= end)
        with self._db.read() as connection:
            return [event_from_row(row) for row in connection.execute(query.order_by(_E.c.sequence.asc()))]


class SqlStore:
    """The three repositories over one SQLite or PostgreSQL database.

    Opening it migrates the schema to head if needed (one SELECT when current).
    Raises StoreUnavailable if the database cannot be reached.
    """

    workflows: WorkflowRepository
    executions: ExecutionRepository
    events: EventStore
    queue: ExecutionQueue
    schedules: ScheduleRepository
    signals: SignalInbox
    queues: QueueRepository

    def __init__(self, url: str) -> None:
        self._db = Database(url)
        try:
            with self._db.translated():
                ensure_current(self._db.engine)
        except BaseException:
            self._db.dispose()
            raise
        starts = StartStatements(self._db)
        self.workflows = SqlWorkflows(self._db, starts)
        self.executions = SqlExecutions(self._db, starts)
        self.events = SqlEvents(self._db)
        self.queue = SqlQueue(self._db, starts)
        self.schedules = SqlSchedules(self._db)
        self.signals = SqlSignals(self._db)
        self.queues = SqlQueues(self._db)

    @property
    def engine(self) -> Engine:
        """For migrations, tests and tooling; the repositories are the API."""
        return self._db.engine

    @property
    def name(self) -> str:
        """The database URL without its password."""
        return self._db.name

    def ping(self) -> None:
        """SELECT 1, for readiness checks; raises StoreUnavailable."""
        self._db.ping()

    def close(self) -> None:
        self._db.dispose()
