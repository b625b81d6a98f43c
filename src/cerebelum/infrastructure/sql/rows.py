"""Rows <-> domain values, shared by the store and the queue adapters."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy.engine import Row

from cerebelum.domain.events import Event
from cerebelum.domain.execution import Execution
from cerebelum.domain.workflow import StoredWorkflow
from cerebelum.infrastructure.sql import schema


def workflow_from_row(row: Row[Any]) -> StoredWorkflow:
    return StoredWorkflow(
        id=row.id,
        name=row.name,
        version=row.version,
        definition=row.definition,
        digest=row.digest,
        created_at=row.created_at,
        deleted=row.deleted_at is not None,
    )


def execution_from_row(row: Row[Any]) -> Execution:
    return Execution(
        id=row.id,
        workflow=row.workflow,
        version=row.version,
        status=row.status,
        input=row.input,
        seed=row.seed,
        virtual_time=row.virtual_time,
        created_at=row.created_at,
        output=row.output,
        error=row.error,
        started_at=row.started_at,
        completed_at=row.completed_at,
        last_sequence=row.last_sequence,
        control=row.control,
        key=row.start_key,
        schedule_name=row.schedule_name,
        schedule_tick=row.schedule_tick,
        signals_sent=row.signals_sent,
        timeout_s=row.timeout_s,
        forked_from=row.forked_from,
        forked_at=row.forked_at,
        code_version=row.code_version,
        versioning=row.versioning,
        parent_id=row.parent_id,
        parent_node=row.parent_node,
        depth=row.depth,
        queue=row.queue,
        priority=row.priority,
        concurrency_key=row.concurrency_key,
        first_claimed_at=row.first_claimed_at,
    )


# Row column -> Execution field, where the names differ (the rest are the same name).
_RENAMED = {"start_key": "key"}
# Columns only the queue writes: never copied from a domain value (a lease, a timer, a request).
_QUEUE_ONLY = frozenset({"claimed_by", "lease_token", "lease_expires_at", "wake_at", "control", "updated_at"})


def execution_values(execution: Execution, updated_at: datetime) -> dict[str, Any]:
    """The row of `execution` as written whole (a fork, an import): every column
    `execution_from_row` reads, so a new column cannot be forgotten by one writer."""
    values = {
        column.name: getattr(execution, _RENAMED.get(column.name, column.name))
        for column in schema.executions.columns
        if column.name not in _QUEUE_ONLY
    }
    values["updated_at"] = updated_at
    return values


def event_values(event: Event) -> dict[str, Any]:
    """An event's row, as `event_from_row` reads it."""
    return {column.name: getattr(event, column.name) for column in schema.events.columns}


def event_from_row(row: Row[Any]) -> Event:
    return Event(
        id=row.id,
        execution_id=row.execution_id,
        sequence=row.sequence,
        type=row.type,
        node_id=row.node_id,
        payload=row.payload,
        timestamp=row.timestamp,
        engine_version=row.engine_version,
        workflow_version=row.workflow_version,
        code_version=row.code_version,
    )
