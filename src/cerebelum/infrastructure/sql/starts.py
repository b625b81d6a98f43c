"""The statements every execution pays once: resolving its workflow and inserting its row.

Like `appends`, they talk to the driver directly (fixed SQL, prepared by the
driver, no statement building per call), and a version's definition, which
never changes, is read from the database once per process: resolving a name
asks only which version is the latest.
"""

from __future__ import annotations

import json
import re
import threading
from datetime import UTC, datetime
from typing import Any

from cerebelum.domain.errors import NotFound
from cerebelum.domain.execution import Execution, Lease
from cerebelum.domain.workflow import StoredWorkflow
from cerebelum.infrastructure.sql.database import QUEUE_CHANNEL, Database, sqlite_time, utc_now

_LATEST = (
    "SELECT id, version, digest, created_at, deleted_at FROM workflows"
    " WHERE name = :name AND deleted_at IS NULL ORDER BY version DESC LIMIT 1"
)
_VERSION = "SELECT id, version, digest, created_at, deleted_at FROM workflows WHERE name = :name AND version = :version"
_DEFINITION = "SELECT definition FROM workflows WHERE id = :id"
_ADD_WORKFLOW = (
    "INSERT INTO workflows (id, name, version, definition, digest, created_at)"
    " VALUES (:id, :name, :version, :definition, :digest, :created_at)"
)

_COLUMNS = (
    "id, workflow, version, status, input, seed, virtual_time, created_at, last_sequence, updated_at,"
    " claimed_by, lease_token, lease_expires_at, start_key, timeout_s, versioning, parent_id, parent_node, depth,"
    " schedule_name, schedule_tick, queue, priority, concurrency_key, first_claimed_at"
)
_VALUES = (
    ":id, :workflow, :version, :status, :input, :seed, :virtual_time, :created_at, :last_sequence, :updated_at,"
    " :claimed_by, :lease_token, :lease_expires_at, :start_key, :timeout_s, :versioning, :parent_id, :parent_node, :depth,"
    " :schedule_name, :schedule_tick, :queue, :priority, :concurrency_key, :first_claimed_at"
)
_INSERT_SQLITE = f"INSERT INTO executions ({_COLUMNS}) VALUES ({_VALUES})"
_INSERT_PG = (
    f"INSERT INTO executions ({_COLUMNS}) VALUES ({_VALUES.replace(':input', ':input::jsonb')})"
    " RETURNING CASE WHEN :tell THEN pg_notify(:channel, id) END"
)
# An execution this process runs itself is inserted already leased, unless its
# queue has limits: then it must wait for a slot like any other (no row comes back).
_UNLIMITED = (
    " WHERE NOT EXISTS (SELECT 1 FROM queues WHERE name = :queue_name AND (concurrency IS NOT NULL"
    " OR per_key_concurrency IS NOT NULL OR rate_count IS NOT NULL))"
)
_INSERT_LEASED_SQLITE = f"INSERT INTO executions ({_COLUMNS}) SELECT {_VALUES}{_UNLIMITED} RETURNING id"
# (A SELECT's NULL is text: the non-text columns that may be null are given their type.)
_TYPED_PG = _VALUES.replace(":input", ":input::jsonb").replace(":timeout_s", ":timeout_s::float8")
_TYPED_PG = _TYPED_PG.replace(":schedule_tick", ":schedule_tick::timestamptz")
_INSERT_LEASED_PG = f"INSERT INTO executions ({_COLUMNS}) SELECT {_TYPED_PG}{_UNLIMITED} RETURNING id"


def for_postgresql(sql: str) -> str:
    """`:name` placeholders (sqlite3's style) as psycopg's `%(name)s`; `::casts` untouched."""
    return re.sub(r"(?<!:):(\w+)", r"%(\1)s", sql)


class StartStatements:
    """Workflow resolution and execution rows for one database."""

    def __init__(self, db: Database) -> None:
        self._db = db
        self._pg = db.is_postgresql
        self._definitions: dict[str, str] = {}  # workflow row id -> definition, as JSON text
        self._lock = threading.Lock()
        if self._pg:
            self._latest, self._version = for_postgresql(_LATEST), for_postgresql(_VERSION)
            self._definition, self._insert = for_postgresql(_DEFINITION), for_postgresql(_INSERT_PG)
            self._insert_leased = for_postgresql(_INSERT_LEASED_PG)
            self._add_workflow = for_postgresql(_ADD_WORKFLOW.replace(":definition", ":definition::jsonb"))
        else:
            self._latest, self._version, self._definition, self._insert = _LATEST, _VERSION, _DEFINITION, _INSERT_SQLITE
            self._insert_leased = _INSERT_LEASED_SQLITE
            self._add_workflow = _ADD_WORKFLOW

    def workflow(self, name: str, version: int | None) -> StoredWorkflow:
        """The latest live version of `name`, or exactly `version` (deleted or not)."""
        with self._db.driver(write=False) as connection:
            if version is None:
                row = connection.execute(self._latest, {"name": name}).fetchone()
            else:
                row = connection.execute(self._version, {"name": name, "version": version}).fetchone()
            if row is None:
                suffix = "" if version is None else f" version {version}"
                raise NotFound(f"unknown workflow '{name}'{suffix}")
            workflow_id = row[0]
            text = self._definitions.get(workflow_id)
            if text is None:
                stored = connection.execute(self._definition, {"id": workflow_id}).fetchone()[0]
                text = stored if isinstance(stored, str) else json.dumps(stored)
                with self._lock:
                    self._definitions[workflow_id] = text
        definition = json.loads(text)  # a dict of its own for each caller: the cache must not be changed through it
        return StoredWorkflow(
            id=workflow_id,
            name=name,
            version=row[1],
            definition=definition,
            digest=row[2],
            created_at=self._time(row[3]),
            deleted=row[4] is not None,
        )

    def insert(
        self, execution: Execution, lease: Lease | None, tell: bool, workflow: StoredWorkflow | None = None
    ) -> bool:
        """The new row, leased or free; `tell` wakes idle workers (PostgreSQL) once it is committed.
        With `workflow`, that new version is inserted first, in the same transaction.
        A leased row whose queue has limits is inserted free instead (False: not leased)."""
        now = utc_now()
        values: dict[str, Any] = {
            "id": execution.id,
            "workflow": execution.workflow,
            "version": execution.version,
            "status": execution.status,
            "input": json.dumps(execution.input) if execution.input is not None else None,
            "seed": execution.seed,
            "virtual_time": execution.virtual_time,
            "created_at": _aware(execution.created_at),
            "last_sequence": execution.last_sequence,
            "updated_at": now,
            "claimed_by": lease.owner if lease is not None else None,
            "lease_token": lease.token if lease is not None else None,
            "lease_expires_at": lease.expires_at if lease is not None else None,
            "start_key": execution.key,
            "timeout_s": execution.timeout_s,
            "versioning": execution.versioning,
            "parent_id": execution.parent_id,
            "parent_node": execution.parent_node,
            "depth": execution.depth,
            "schedule_name": execution.schedule_name,
            "schedule_tick": execution.schedule_tick,
            "queue": execution.queue,
            "queue_name": execution.queue,  # a parameter of its own: PostgreSQL types each one once
            "priority": execution.priority,
            "concurrency_key": execution.concurrency_key,
            "first_claimed_at": now if lease is not None else None,
        }
        if self._pg:
            values.update(tell=tell, channel=QUEUE_CHANNEL)
        else:
            values.update(
                created_at=sqlite_time(execution.created_at),
                updated_at=sqlite_time(now),
                lease_expires_at=sqlite_time(values["lease_expires_at"]),
                schedule_tick=sqlite_time(execution.schedule_tick),
                first_claimed_at=sqlite_time(values["first_claimed_at"]),
            )
        taken = f"execution {execution.id} already exists" + (f" (or key '{execution.key}' is taken)" if execution.key else "")
        with self._db.driver(conflict=taken) as connection:
            if workflow is None:
                return self._insert_row(connection, values, lease is not None)
            if self._pg:
                with connection.transaction():  # autocommit otherwise: one transaction for both rows
                    connection.execute(self._add_workflow, self._workflow_values(workflow))
                    return self._insert_row(connection, values, lease is not None)
            # SQLite: already inside BEGIN IMMEDIATE
            connection.execute(self._add_workflow, self._workflow_values(workflow))
            return self._insert_row(connection, values, lease is not None)

    def _insert_row(self, connection: Any, values: dict[str, Any], leased: bool) -> bool:
        if leased and connection.execute(self._insert_leased, values).fetchall():
            return True
        if leased:  # a limited queue: inserted free, and the workers are told
            free = {"claimed_by": None, "lease_token": None, "lease_expires_at": None, "first_claimed_at": None}
            values = {**values, **free, "tell": True} if self._pg else {**values, **free}
        connection.execute(self._insert, values).fetchall()
        return False

    def _workflow_values(self, workflow: StoredWorkflow) -> dict[str, Any]:
        created = _aware(workflow.created_at)
        return {
            "id": workflow.id,
            "name": workflow.name,
            "version": workflow.version,
            "definition": json.dumps(workflow.definition),
            "digest": workflow.digest,
            "created_at": created if self._pg else sqlite_time(created),
        }

    @staticmethod
    def _time(value: Any) -> datetime:
        if isinstance(value, str):  # SQLite: naive UTC text
            return datetime.fromisoformat(value).replace(tzinfo=UTC)
        moment: datetime = value
        return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def _aware(moment: datetime) -> datetime:
    """A naive time is UTC (as the `UTCDateTime` column type takes it), never the server's zone."""
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment
