"""Executions as a work queue in the database: leases, heartbeats, parked timers.

PostgreSQL claims with `FOR UPDATE SKIP LOCKED`, so many workers on many
machines never block each other; SQLite claims inside its one writer lock
(BEGIN IMMEDIATE), which makes the select-then-update atomic.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import String, bindparam, cast, func, or_, select, update
from sqlalchemy.engine import Row

from cerebelum.domain.errors import NotFound
from cerebelum.domain.execution import Execution, ExecutionStatus, Lease, Versioning
from cerebelum.domain.workflow import StoredWorkflow
from cerebelum.infrastructure.sql import schema
from cerebelum.infrastructure.sql.database import Database, utc_now
from cerebelum.infrastructure.sql.rows import execution_from_row
from cerebelum.infrastructure.sql.starts import StartStatements

_X = schema.executions
CLAIMABLE = (ExecutionStatus.PENDING, ExecutionStatus.RUNNING)


def _lease(row: Row[Any]) -> Lease:
    return Lease(row.id, row.claimed_by, row.lease_token, row.lease_expires_at)


def _free(now: Any) -> Any:
    return or_(_X.c.lease_expires_at.is_(None), _X.c.lease_expires_at < now)


# The claim runs once per execution a worker takes, so its statements are built
# once, here (SQLAlchemy then reuses their compiled form and cache key).
_CANDIDATES = (
    select(_X.c.id)
    .where(
        _X.c.status.in_(CLAIMABLE),
        _free(bindparam("now")),
        or_(_X.c.wake_at.is_(None), _X.c.wake_at <= bindparam("now")),
        # code versions: a pinned execution is claimed only by its own code version (docs/deploys.md)
        or_(_X.c.versioning != Versioning.PINNED, _X.c.code_version.is_(None), _X.c.code_version == bindparam("claimer_version")),
    )
    .order_by(func.coalesce(_X.c.wake_at, _X.c.created_at))
    .limit(bindparam("limit"))
)
_LEASED: dict[str, Any] = {"claimed_by": bindparam("owner"), "lease_expires_at": bindparam("expires"), "wake_at": None}
# PostgreSQL: one statement picks (skipping rows other workers are claiming) and
# leases them, each with a token of its own from the server.
_PICKED = _CANDIDATES.with_for_update(skip_locked=True).cte("picked")
_PG_CLAIM = (
    update(_X)
    .where(_X.c.id == _PICKED.c.id)
    .values(lease_token=cast(func.gen_random_uuid(), String), **_LEASED)
    .returning(*_X.c)
)
_SQLITE_CLAIM = (
    update(_X).where(_X.c.id == bindparam("claimed_id")).values(lease_token=bindparam("token"), **_LEASED).returning(*_X.c)
)


class SqlQueue:
    def __init__(self, db: Database, starts: StartStatements) -> None:
        self._db = db
        self._starts = starts

    def create_leased(self, execution: Execution, owner: str, ttl: float, workflow: StoredWorkflow | None = None) -> Lease:
        lease = Lease(execution.id, owner, str(uuid.uuid4()), utc_now() + timedelta(seconds=ttl))
        self._starts.insert(execution, lease, tell=False, workflow=workflow)
        return lease

    def claim(self, owner: str, limit: int, ttl: float, code_version: str | None = None) -> list[tuple[Execution, Lease]]:
        now = utc_now()
        values = {"now": now, "limit": limit, "owner": owner, "expires": now + timedelta(seconds=ttl)}
        values["claimer_version"] = code_version  # code versions: which pinned executions this claim may take
        if self._db.is_postgresql:
            with self._db.write() as connection:
                rows = connection.execute(_PG_CLAIM, values).all()
            return [(execution_from_row(row), _lease(row)) for row in rows]
        claimed: list[tuple[Execution, Lease]] = []
        with self._db.write() as connection:
            ids = [row.id for row in connection.execute(_CANDIDATES, values)]
            for execution_id in ids:
                one = {**values, "claimed_id": execution_id, "token": str(uuid.uuid4())}
                row = connection.execute(_SQLITE_CLAIM, one).first()
                if row is not None:
                    claimed.append((execution_from_row(row), _lease(row)))
        return claimed

    def claim_one(self, execution_id: str, owner: str, ttl: float) -> Lease | None:
        now = utc_now()
        token = str(uuid.uuid4())
        with self._db.write() as connection:
            row = connection.execute(
                update(_X)
                .where(_X.c.id == execution_id, _X.c.status.notin_(tuple(ExecutionStatus.TERMINAL)), _free(now))
                .values(claimed_by=owner, lease_token=token, lease_expires_at=now + timedelta(seconds=ttl))
                .returning(_X.c.id, _X.c.claimed_by, _X.c.lease_token, _X.c.lease_expires_at)
            ).first()
        return _lease(row) if row is not None else None

    def renew(self, leases: Sequence[Lease], ttl: float) -> list[tuple[Lease, str | None, int]]:
        if not leases:
            return []
        expires = utc_now() + timedelta(seconds=ttl)
        tokens = [lease.token for lease in leases]
        # Rows locked in id order, as the append batch locks them: no deadlock between the two.
        held_rows = select(_X.c.id).where(_X.c.lease_token.in_(tokens)).order_by(_X.c.id).with_for_update(key_share=True)
        with self._db.write() as connection:
            rows = connection.execute(
                update(_X)
                .where(_X.c.id.in_(held_rows))
                .values(lease_expires_at=expires)
                .returning(_X.c.lease_token, _X.c.control, _X.c.signals_sent)
            ).all()
        held = {row.lease_token: (row.control, row.signals_sent) for row in rows}
        return [(Lease(x.execution_id, x.owner, x.token, expires), *held[x.token]) for x in leases if x.token in held]

    def release(self, lease: Lease, wake_at: datetime | None = None, note: dict[str, Any] | None = None) -> None:
        values: dict[str, Any] = {"claimed_by": None, "lease_token": None, "lease_expires_at": None, "wake_at": wake_at}
        if note is not None:
            values["error"] = note
        with self._db.write() as connection:
            connection.execute(
                update(_X).where(_X.c.id == lease.execution_id, _X.c.lease_token == lease.token).values(**values)
            )
            if wake_at is None:
                self._db.notify_queue(connection, lease.execution_id)

    def wake(self, execution_id: str) -> None:
        with self._db.write() as connection:
            woken = connection.execute(
                update(_X).where(_X.c.id == execution_id, _X.c.wake_at.is_not(None)).values(wake_at=None).returning(_X.c.id)
            ).first()
            if woken is not None:
                self._db.notify_queue(connection, execution_id)

    def request(self, execution_id: str, control: str) -> Execution:
        with self._db.write() as connection:
            row = connection.execute(update(_X).where(_X.c.id == execution_id).values(control=control).returning(*_X.c)).first()
        if row is None:
            raise NotFound(f"unknown execution '{execution_id}'")
        return execution_from_row(row)

    def per_code_version(self) -> dict[tuple[str | None, str], int]:
        live = _X.c.status.notin_(tuple(ExecutionStatus.TERMINAL))
        query = select(_X.c.code_version, _X.c.versioning, func.count()).where(live).group_by(_X.c.code_version, _X.c.versioning)
        with self._db.read() as connection:
            return {(row[0], row[1]): row[2] for row in connection.execute(query)}

    def counts(self) -> dict[str, int]:
        now = utc_now()
        with self._db.read() as connection:
            rows = connection.execute(select(_X.c.status, func.count()).group_by(_X.c.status)).all()
            parked = connection.execute(select(func.count()).where(_X.c.wake_at.is_not(None), _X.c.wake_at > now)).scalar()
            leased = connection.execute(select(func.count()).where(_X.c.lease_expires_at > now)).scalar()
            expired = connection.execute(select(func.count()).where(_X.c.lease_expires_at <= now)).scalar()
        counts = {status: 0 for status in ExecutionStatus.ALL}
        counts.update({row[0]: row[1] for row in rows})
        counts.update(parked=parked or 0, leased=leased or 0, expired=expired or 0)
        return counts
