"""The hot path: appending events, for one execution or many at once (group commit).

Every step of every execution ends here, so this module talks to the driver
directly (fixed SQL text, prepared by the driver, no per-call compilation):

- PostgreSQL: ONE statement per batch, in autocommit, so a batch costs one
  round trip and one commit. Its CTEs lock the rows in id order, update
  every execution row whose lease and `last_sequence` still match, insert
  the events of the rows that moved, notify listeners, and report which
  moved; only when one did not is a second query needed, to say why.
- SQLite: one BEGIN IMMEDIATE transaction per batch, one SAVEPOINT per
  execution so one refusal does not undo the others.

Both must store exactly what the SQLAlchemy columns in `schema` would.
"""

from __future__ import annotations

import contextlib
import json
import sqlite3
from collections.abc import Generator, Sequence
from datetime import UTC, datetime
from typing import Any

import psycopg
from psycopg import pq

from cerebelum.domain.errors import CerebelumError, Conflict, LeaseLost, NotFound, StoreUnavailable
from cerebelum.domain.events import Event
from cerebelum.domain.execution import ExecutionStatus
from cerebelum.domain.ports import Append, AppendResult
from cerebelum.infrastructure.sql.database import (
    EVENTS_CHANNEL,
    PG_CONNECT_TIMEOUT_S,
    Database,
    driver_error,
    first_line,
    sqlite_time,
)

BATCH_CONFLICT = "an event of the batch is already stored"


def refusal_message(append: Append) -> str:
    sequences = [event.sequence for event in append.events]
    span = "..".join(str(n) for n in dict.fromkeys(sequences[:1] + sequences[-1:]))
    return f"sequence {span} of {append.execution.id} is already taken or out of order"


def has_gap(events: Sequence[Event]) -> bool:
    return any(event.sequence != events[0].sequence + offset for offset, event in enumerate(events))


def refusal(append: Append, known: bool, token: str | None) -> Exception:
    """Why an execution row did not move (its state before the statement)."""
    if not known:
        return NotFound(f"unknown execution '{append.execution.id}'")
    if append.lease is not None and token != append.lease.token:
        return LeaseLost(f"lease on {append.execution.id} was lost; another worker holds it")
    return Conflict(refusal_message(append))  # the sequence is taken, or the batch leaves a gap


def append_many(db: Database, appends: Sequence[Append]) -> list[AppendResult]:
    results, todo = _judge_gaps(appends)
    write = _postgresql if db.is_postgresql else _sqlite
    return _filled(results, todo, write(db, [appends[i] for i in todo]) if todo else [])


def _judge_gaps(appends: Sequence[Append]) -> tuple[list[AppendResult], list[int]]:
    """Refuse the appends that leave a gap inside themselves; the indexes of the rest."""
    results: list[AppendResult] = [None] * len(appends)
    todo: list[int] = []
    for index, append in enumerate(appends):
        if append.events and has_gap(append.events):
            results[index] = Conflict(refusal_message(append))
        else:
            todo.append(index)
    return results, todo


def _filled(results: list[AppendResult], todo: list[int], written: Sequence[AppendResult]) -> list[AppendResult]:
    """The written appends' results in their places among the refused ones."""
    for index, result in zip(todo, written, strict=True):
        results[index] = result
    return results


def _unstorable(append: Append, exc: Exception) -> CerebelumError:
    return CerebelumError(f"the events of {append.execution.id} cannot be stored: {exc}")


# -- PostgreSQL -------------------------------------------------------------

# Rows are locked in id order (the `locked` CTE), as `SqlQueue.renew` does, so
# a batch and a heartbeat that share executions cannot deadlock.
_PG_APPEND = f"""
WITH batch AS (
    SELECT * FROM json_to_recordset(%(rows)s::json) AS b(
        id text, status text, output jsonb, error jsonb, started_at timestamptz, completed_at timestamptz,
        last_sequence int, first_sequence int, token text, consumed text, terminal boolean, tell boolean, owner text,
        code_version text)
),
locked AS MATERIALIZED (
    SELECT id FROM executions WHERE id = ANY(ARRAY(SELECT b.id FROM batch b)) ORDER BY id FOR NO KEY UPDATE
),
moved AS (
    UPDATE executions x SET
        status = b.status, output = b.output, error = b.error,
        started_at = b.started_at, completed_at = b.completed_at,
        last_sequence = b.last_sequence, updated_at = now(), code_version = b.code_version,
        control = CASE WHEN b.terminal OR x.control = b.consumed THEN NULL ELSE x.control END,
        claimed_by = CASE WHEN b.terminal THEN NULL ELSE x.claimed_by END,
        lease_token = CASE WHEN b.terminal THEN NULL ELSE x.lease_token END,
        lease_expires_at = CASE WHEN b.terminal THEN NULL ELSE x.lease_expires_at END,
        wake_at = CASE WHEN b.terminal THEN NULL ELSE x.wake_at END
    FROM batch b
    WHERE x.id IN (SELECT id FROM locked) AND x.id = b.id
      AND (b.token IS NULL OR x.lease_token = b.token)
      AND (b.first_sequence IS NULL OR x.last_sequence = b.first_sequence - 1)
    RETURNING x.id, x.control, x.last_sequence, x.status
),
written AS (
    INSERT INTO events (
        id, execution_id, sequence, type, node_id, payload, "timestamp", engine_version, workflow_version, code_version)
    SELECT e.id, e.execution_id, e.sequence, e.type, e.node_id, e.payload, e.ts, e.engine_version, e.workflow_version,
        e.code_version
    FROM json_to_recordset(%(events)s::json) AS e(
        id text, execution_id text, sequence int, type text, node_id text, payload jsonb, ts timestamptz,
        engine_version text, workflow_version int, code_version text)
    JOIN moved m ON m.id = e.execution_id
    ORDER BY e.execution_id, e.sequence
),
told AS (
    SELECT pg_notify('{EVENTS_CHANNEL}', m.id || ' ' || m.last_sequence || ' ' || m.status || ' ' || coalesce(b.owner, ''))
    FROM moved m JOIN batch b ON b.id = m.id WHERE b.tell
)
SELECT b.id, m.id IS NOT NULL AS moved, m.control, (SELECT count(*) FROM told) AS told
FROM batch b LEFT JOIN moved m ON m.id = b.id
"""
# Why rows did not move: read after the statement, so a lease taken while it
# waited for the row's lock shows as the new holder's (LeaseLost, not Conflict).
_PG_HOLDERS = "SELECT id, lease_token FROM executions WHERE id = ANY(%(ids)s::text[])"


def _iso(moment: datetime | None) -> str | None:
    """With its offset: a naive value is UTC, as `UTCDateTime` takes it."""
    if moment is None:
        return None
    return (moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment).isoformat()


def _pg_row(append: Append) -> dict[str, Any]:
    x = append.execution
    return {
        "id": x.id,
        "status": x.status,
        "output": x.output,
        "error": x.error,
        "started_at": _iso(x.started_at),
        "completed_at": _iso(x.completed_at),
        "last_sequence": x.last_sequence,
        "first_sequence": append.events[0].sequence if append.events else None,
        "token": append.lease.token if append.lease is not None else None,
        "consumed": append.consumed_control,
        "terminal": x.status in ExecutionStatus.TERMINAL,
        "tell": bool(append.events),
        "owner": append.lease.owner if append.lease is not None else None,  # listeners drop their own echoes
        "code_version": x.code_version,
    }


def _pg_event(event: Event) -> dict[str, Any]:
    return {
        "id": event.id,
        "execution_id": event.execution_id,
        "sequence": event.sequence,
        "type": event.type,
        "node_id": event.node_id,
        "payload": event.payload,
        "ts": _iso(event.timestamp),
        "engine_version": event.engine_version,
        "workflow_version": event.workflow_version,
        "code_version": event.code_version,
    }


def _pg_parameters(appends: Sequence[Append]) -> dict[str, Any]:
    return {
        "rows": json.dumps([_pg_row(a) for a in appends]),
        "events": json.dumps([_pg_event(e) for a in appends for e in a.events]),
    }


def _pg_outcome(appends: Sequence[Append], rows: dict[str, Any], holders: dict[str, Any]) -> list[AppendResult]:
    results: list[AppendResult] = []
    for append in appends:
        _, moved, control, _ = rows[append.execution.id]
        x = append.execution.id
        results.append(control if moved else refusal(append, x in holders, holders.get(x)))
    return results


def _pg_refused(appends: Sequence[Append], rows: dict[str, Any]) -> list[str]:
    return [append.execution.id for append in appends if not rows[append.execution.id][1]]


def _one_at_a_time(appends: Sequence[Append]) -> bool:
    """One execution twice in a batch: written one append at a time, in order."""
    ids = [append.execution.id for append in appends]
    return len(appends) > 1 and len(set(ids)) != len(ids)


# What the two PostgreSQL writers (thread and loop) share: which statements to
# send, and what to do when PostgreSQL refuses one. A generator that yields
# each batch to write as one statement and is sent its results, or the error
# the statement raised; the writers only run the statements.
Outcome = list[AppendResult] | CerebelumError | TypeError | ValueError
Policy = Generator[Sequence[Append], Outcome, list[AppendResult]]


def _pg_policy(appends: Sequence[Append]) -> Policy:
    """The batch in one statement; if PostgreSQL refuses the statement itself (a
    value it cannot store, say), each append is written alone, so only the one
    at fault fails."""
    if _one_at_a_time(appends):
        return (yield from _each_alone(appends))
    outcome = yield appends
    if isinstance(outcome, StoreUnavailable):
        raise outcome
    if isinstance(outcome, list):
        return outcome
    if len(appends) > 1:
        return (yield from _each_alone(appends))
    return [outcome if isinstance(outcome, CerebelumError) else _unstorable(appends[0], outcome)]


def _each_alone(appends: Sequence[Append]) -> Policy:
    results: list[AppendResult] = []
    for append in appends:
        results += yield from _pg_policy([append])
    return results


def _postgresql(db: Database, appends: Sequence[Append]) -> list[AppendResult]:
    policy = _pg_policy(appends)
    batch = next(policy)
    while True:
        try:
            outcome: Outcome = _pg_statement(db, batch)
        except (CerebelumError, TypeError, ValueError) as exc:
            outcome = exc
        try:
            batch = policy.send(outcome)
        except StopIteration as done:
            return list(done.value)


def _pg_statement(db: Database, appends: Sequence[Append]) -> list[AppendResult]:
    parameters = _pg_parameters(appends)
    with db.driver(conflict=BATCH_CONFLICT) as connection:
        rows = {row[0]: row for row in connection.execute(_PG_APPEND, parameters).fetchall()}
        refused = _pg_refused(appends, rows)
        holders = dict(connection.execute(_PG_HOLDERS, {"ids": refused}).fetchall()) if refused else {}
    return _pg_outcome(appends, rows, holders)


class PgLoopWriter:
    """The PostgreSQL batch statement on an async psycopg connection owned by
    one event loop: the same statement, results and fallbacks as `_postgresql`,
    without handing each batch to a thread and back. Group commit writes one
    batch at a time per loop, so one connection serves it; a broken one is
    replaced on the next batch."""

    def __init__(self, db: Database) -> None:
        self._db = db
        self._connection: psycopg.AsyncConnection[Any] | None = None
        self._cursor: psycopg.AsyncCursor[Any] | None = None

    async def append_many(self, appends: Sequence[Append]) -> list[AppendResult]:
        results, todo = _judge_gaps(appends)
        return _filled(results, todo, await self._write([appends[i] for i in todo]) if todo else [])

    async def _write(self, appends: Sequence[Append]) -> list[AppendResult]:
        policy = _pg_policy(appends)
        batch = next(policy)
        while True:
            try:
                outcome: Outcome = await self._statement(batch)
            except (CerebelumError, TypeError, ValueError) as exc:
                outcome = exc
            try:
                batch = policy.send(outcome)
            except StopIteration as done:
                return list(done.value)

    async def _statement(self, appends: Sequence[Append]) -> list[AppendResult]:
        parameters = _pg_parameters(appends)
        connection, cursor = await self._connect()
        try:
            await cursor.execute(_PG_APPEND, parameters)
            rows = {row[0]: row for row in await cursor.fetchall()}
            refused = _pg_refused(appends, rows)
            holders: dict[str, Any] = {}
            if refused:
                await cursor.execute(_PG_HOLDERS, {"ids": refused})
                holders = dict(await cursor.fetchall())
        except BaseException as exc:
            await self._drop_if_unusable(connection)
            mine = driver_error(exc, self._db.name, BATCH_CONFLICT) if isinstance(exc, Exception) else None
            if mine is None:
                raise
            raise mine from exc
        return _pg_outcome(appends, rows, holders)

    async def _connect(self) -> tuple[psycopg.AsyncConnection[Any], psycopg.AsyncCursor[Any]]:
        """The connection and its one cursor (reused: making one per batch shows in profiles)."""
        if self._connection is None or self._connection.closed:
            try:
                connection = await psycopg.AsyncConnection.connect(
                    self._db.conninfo, autocommit=True, connect_timeout=PG_CONNECT_TIMEOUT_S
                )
            except psycopg.Error as exc:
                raise StoreUnavailable(f"database {self._db.name} is unavailable: {first_line(exc)}") from exc
            with contextlib.suppress(psycopg.Error):  # as `database._plan_once`
                await connection.execute("SET plan_cache_mode = force_generic_plan")
            self._connection, self._cursor = connection, connection.cursor()
        assert self._cursor is not None
        return self._connection, self._cursor

    async def _drop_if_unusable(self, connection: psycopg.AsyncConnection[Any]) -> None:
        """After a failure: a connection that is broken, or left mid-statement (a
        cancelled batch), is closed; the next batch opens another."""
        if connection.closed or connection.broken or connection.info.transaction_status != pq.TransactionStatus.IDLE:
            await self.close()

    async def close(self) -> None:
        connection, self._connection, self._cursor = self._connection, None, None
        if connection is not None and not connection.closed:
            with contextlib.suppress(Exception):
                await connection.close()


# -- SQLite -----------------------------------------------------------------

_SQLITE_MOVE = """
UPDATE executions SET status = ?, output = ?, error = ?, started_at = ?, completed_at = ?, last_sequence = ?,
    updated_at = ?, code_version = ?, control = CASE WHEN ? OR control = ? THEN NULL ELSE control END,
    claimed_by = CASE WHEN ? THEN NULL ELSE claimed_by END,
    lease_token = CASE WHEN ? THEN NULL ELSE lease_token END,
    lease_expires_at = CASE WHEN ? THEN NULL ELSE lease_expires_at END,
    wake_at = CASE WHEN ? THEN NULL ELSE wake_at END
WHERE id = ? AND (? IS NULL OR lease_token = ?) AND (? IS NULL OR last_sequence = ? - 1)
RETURNING control
"""
_SQLITE_INSERT = """
INSERT INTO events (id, execution_id, sequence, type, node_id, payload, "timestamp", engine_version, workflow_version,
    code_version)
VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
"""


def _sqlite_json(value: Any) -> str | None:
    return None if value is None else json.dumps(value)


def _sqlite(db: Database, appends: Sequence[Append]) -> list[AppendResult]:
    results: list[AppendResult] = []
    now = sqlite_time(datetime.now(UTC))
    with db.driver(conflict=BATCH_CONFLICT) as connection:
        for append in appends:
            connection.execute("SAVEPOINT append")
            try:
                results.append(_sqlite_one(connection, append, now))
            except sqlite3.IntegrityError:
                results.append(Conflict(refusal_message(append)))
                connection.execute("ROLLBACK TO append")
            except (TypeError, ValueError, sqlite3.DataError, sqlite3.InterfaceError) as exc:  # a value it cannot store
                results.append(_unstorable(append, exc))
                connection.execute("ROLLBACK TO append")
            connection.execute("RELEASE append")
    return results


def _sqlite_one(connection: Any, append: Append, now: str | None) -> AppendResult:
    x = append.execution
    terminal = x.status in ExecutionStatus.TERMINAL
    token = append.lease.token if append.lease is not None else None
    first = append.events[0].sequence if append.events else None
    row = connection.execute(
        _SQLITE_MOVE,
        (
            x.status,
            _sqlite_json(x.output),
            _sqlite_json(x.error),
            sqlite_time(x.started_at),
            sqlite_time(x.completed_at),
            x.last_sequence,
            now,
            x.code_version,
            terminal,
            append.consumed_control,
            terminal,
            terminal,
            terminal,
            terminal,
            x.id,
            token,
            token,
            first,
            first,
        ),
    ).fetchall()  # fetch all: an unfinished statement would block RELEASE
    if not row:
        found = connection.execute("SELECT lease_token FROM executions WHERE id = ?", (x.id,)).fetchone()
        return refusal(append, found is not None, found[0] if found is not None else None)
    if append.events:
        connection.executemany(
            _SQLITE_INSERT,
            [
                (
                    e.id,
                    e.execution_id,
                    e.sequence,
                    e.type,
                    e.node_id,
                    json.dumps(e.payload),
                    sqlite_time(e.timestamp),
                    e.engine_version,
                    e.workflow_version,
                    e.code_version,
                )
                for e in append.events
            ],
        )
    control: str | None = row[0][0]
    return control
