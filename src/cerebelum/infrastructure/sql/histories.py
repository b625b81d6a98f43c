"""Retention and portable histories on SQL: purging old executions in bounded
batches, and importing an execution recorded in another database."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import ColumnElement, and_, delete, exists, func, insert, select

from cerebelum.domain.errors import Conflict
from cerebelum.domain.events import Event
from cerebelum.domain.execution import Execution, ExecutionStatus
from cerebelum.domain.history import different_definition
from cerebelum.domain.ports import PurgeSelection
from cerebelum.domain.workflow import StoredWorkflow
from cerebelum.infrastructure.sql import schema
from cerebelum.infrastructure.sql.database import Database, utc_now
from cerebelum.infrastructure.sql.rows import event_values, execution_values, workflow_from_row

_W, _X, _E = schema.workflows, schema.executions, schema.events


def purgeable(selection: PurgeSelection) -> ColumnElement[bool]:
    """The one predicate of a purge, used to select AND again in the DELETE itself.

    Terminal statuses are final, so a row that matches it stays matching: an
    execution that is still running (or finishing right now, in another
    transaction) never matches and is never deleted.

    Never the parent of an unfinished child (spec section 4): a parent ends
    only after its children, but a cancelled one cancels them on its way out.
    """
    statuses = sorted(selection.statuses & ExecutionStatus.TERMINAL)
    child = _X.alias("child")
    unfinished_child = exists(
        select(child.c.id).where(child.c.parent_id == _X.c.id, child.c.status.notin_(sorted(ExecutionStatus.TERMINAL)))
    )
    clauses = [
        _X.c.status.in_(statuses), _X.c.completed_at.is_not(None), _X.c.completed_at < selection.ended_before,
        ~unfinished_child,
    ]  # fmt: skip
    if selection.workflow is not None:
        clauses.append(_X.c.workflow == selection.workflow)
    return and_(*clauses)


def count_purgeable(db: Database, selection: PurgeSelection) -> int:
    with db.read() as connection:
        return int(connection.execute(select(func.count()).select_from(_X).where(purgeable(selection))).scalar_one())


def purge_batch(db: Database, selection: PurgeSelection, limit: int) -> int:
    """One DELETE of at most `limit` rows in its own transaction; events and
    checkpoints go with them (ON DELETE CASCADE, on SQLite too: foreign_keys=ON).

    No ORDER BY: the database stops at the first `limit` matching rows instead
    of sorting every terminal execution for each batch."""
    if limit < 1 or not selection.statuses & ExecutionStatus.TERMINAL:
        return 0
    chosen = select(_X.c.id).where(purgeable(selection)).limit(limit).scalar_subquery()
    with db.write() as connection:
        return int(connection.execute(delete(_X).where(_X.c.id.in_(chosen), purgeable(selection))).rowcount)


def import_history(db: Database, execution: Execution, events: Sequence[Event], workflow: StoredWorkflow) -> StoredWorkflow:
    taken = f"execution {execution.id} already exists" + (f" (or its key '{execution.key}' is taken)" if execution.key else "")
    with db.write(taken) as connection:
        if connection.execute(select(_X.c.id).where(_X.c.id == execution.id)).first() is not None:
            raise Conflict(f"execution {execution.id} already exists in this database")
        row = connection.execute(select(_W).where(_W.c.name == workflow.name, _W.c.version == workflow.version)).first()
        if row is not None:
            stored = workflow_from_row(row)
            if stored.digest != workflow.digest:
                raise Conflict(different_definition(workflow))
        else:
            stored = workflow
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
        connection.execute(insert(_X).values(**execution_values(execution, utc_now())))
        if events:
            connection.execute(insert(_E), [event_values(event) | {"execution_id": execution.id} for event in events])
    return stored

