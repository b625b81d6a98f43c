"""Executions as a work queue in the database: leases, heartbeats, parked timers.

PostgreSQL claims with `FOR UPDATE SKIP LOCKED`, so many workers on many
machines never block each other; SQLite claims inside its one writer lock
(BEGIN IMMEDIATE), which makes the select-then-update atomic.

Queues with limits (spec section 9) admit their waiting executions first, in
the same transaction (`admission`); the plain claim then takes everything
else that is due: executions of unlimited queues, and those that already
hold a slot.
"""

from __future__ import annotations

import uuid
from collections.abc import Collection, Sequence
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, String, bindparam, cast, exists, func, or_, select, update
from sqlalchemy.engine import Row

from cerebelum.domain.errors import NotFound
from cerebelum.domain.execution import Execution, ExecutionStatus, Lease, Versioning
from cerebelum.domain.workflow import StoredWorkflow
from cerebelum.infrastructure.sql import schema
from cerebelum.infrastructure.sql.admission import LIMITED_NAMES, admissible, admit, admits, limited_queues
from cerebelum.infrastructure.sql.database import Database, utc_now
from cerebelum.infrastructure.sql.rows import execution_from_row
from cerebelum.infrastructure.sql.starts import StartStatements

_X = schema.executions
_TIME = schema.UTCDateTime()
CLAIMABLE = (ExecutionStatus.PENDING, ExecutionStatus.RUNNING)


def _lease(row: Row[Any]) -> Lease:
    return Lease(row.id, row.claimed_by, row.lease_token, row.lease_expires_at)


def _free(now: Any) -> Any:
    return or_(_X.c.lease_expires_at.is_(None), _X.c.lease_expires_at < now)


# The claim runs once per execution a worker takes, so its statements are built
# once, here (SQLAlchemy then reuses their compiled form and cache key).
def _candidates(queues: bool) -> Any:
    """Due executions, but not those of a limited queue still waiting for a slot
    (admission takes them); `queues`: only the worker's queues."""
    due = select(_X.c.id).where(
        _X.c.status.in_(CLAIMABLE),
        _free(bindparam("now")),
        or_(_X.c.wake_at.is_(None), _X.c.wake_at <= bindparam("now")),
        or_(_X.c.first_claimed_at.is_not(None), _X.c.queue.not_in(LIMITED_NAMES)),
        # code versions: a pinned execution is claimed only by its own code version (docs/deploys.md)
        or_(_X.c.versioning != Versioning.PINNED, _X.c.code_version.is_(None), _X.c.code_version == bindparam("claimer_version")),
    )
    if queues:
        due = due.where(_X.c.queue.in_(bindparam("queues", expanding=True)))
    return due.order_by(_X.c.priority, func.coalesce(_X.c.wake_at, _X.c.created_at)).limit(bindparam("limit"))


_CANDIDATES = {False: _candidates(False), True: _candidates(True)}  # keyed by: only some queues?
_LEASED: dict[str, Any] = {
    "claimed_by": bindparam("owner"),
    "lease_expires_at": bindparam("expires"),
    "wake_at": None,
    "first_claimed_at": func.coalesce(_X.c.first_claimed_at, bindparam("first_claim", type_=_TIME)),
}


def _pg_claim(queues: bool) -> Any:
    """PostgreSQL: one statement picks (skipping rows other workers are claiming)
    and leases them, each with a token of its own from the server; each row also
    says whether any queue has limits (the next claim must admit first)."""
    picked = _CANDIDATES[queues].with_for_update(skip_locked=True).cte("picked")
    token = cast(func.gen_random_uuid(), String)
    limits = exists(LIMITED_NAMES).label("any_limited")
    return update(_X).where(_X.c.id == picked.c.id).values(lease_token=token, **_LEASED).returning(*_X.c, limits)


_PG_CLAIM = {False: _pg_claim(False), True: _pg_claim(True)}
# One chosen execution (SQLite's claim, and admissions on both): still free when it is leased.
_CLAIM_ID = (
    update(_X)
    .where(_X.c.id == bindparam("claimed_id"), _free(bindparam("now")))
    .values(lease_token=bindparam("token"), **_LEASED)
    .returning(*_X.c)
)


class SqlQueue:
    def __init__(self, db: Database, starts: StartStatements) -> None:
        self._db = db
        self._starts = starts
        # Whether the next claim must read the queues' limits first. Most databases
        # have none: a PostgreSQL claim then is one statement in autocommit, and
        # its rows say whether limits appeared since. Nothing claimed: look again.
        self._limits_seen = True

    def create_leased(
        self, execution: Execution, owner: str, ttl: float, workflow: StoredWorkflow | None = None
    ) -> Lease | None:
        lease = Lease(execution.id, owner, str(uuid.uuid4()), utc_now() + timedelta(seconds=ttl))
        return lease if self._starts.insert(execution, lease, tell=False, workflow=workflow) else None

    def claim(
        self, owner: str, limit: int, ttl: float, code_version: str | None = None, queues: Collection[str] | None = None
    ) -> list[tuple[Execution, Lease]]:
        now = utc_now()
        values: dict[str, Any] = {"now": now, "first_claim": now, "owner": owner, "expires": now + timedelta(seconds=ttl)}
        values["claimer_version"] = code_version  # code versions: which pinned executions this claim may take
        if queues is not None:
            values["queues"] = list(queues)
        pg = self._db.is_postgresql
        if pg and not self._limits_seen:
            values["limit"] = limit
            with self._db.autocommit() as connection:
                rows = connection.execute(_PG_CLAIM[queues is not None], values).all()
            self._limits_seen = not rows or rows[0].any_limited
            return [(execution_from_row(row), _lease(row)) for row in rows]
        claimed: list[tuple[Execution, Lease]] = []
        with self._db.write() as connection:
            limited = limited_queues(connection, queues)
            for queue in limited:  # first, so plain work cannot starve them
                most = limit - len(claimed)
                if most > 0 and pg:
                    claimed += [(execution_from_row(row), _lease(row)) for row in admit(connection, queue, now, most, values)]
                elif most > 0:
                    chosen = admissible(connection, queue, now, most, pg, code_version)
                    claimed += self._lease_ids(connection, chosen, values)
            values["limit"] = limit - len(claimed)
            if values["limit"] <= 0:
                return claimed
            if pg:
                rows = connection.execute(_PG_CLAIM[queues is not None], values).all()
                self._limits_seen = bool(limited) or not rows or rows[0].any_limited
                return claimed + [(execution_from_row(row), _lease(row)) for row in rows]
            ids = [row.id for row in connection.execute(_CANDIDATES[queues is not None], values)]
            return claimed + self._lease_ids(connection, ids, values)

    @staticmethod
    def _lease_ids(connection: Connection, ids: list[str], values: dict[str, Any]) -> list[tuple[Execution, Lease]]:
        claimed: list[tuple[Execution, Lease]] = []
        for execution_id in ids:
            one = {**values, "claimed_id": execution_id, "token": str(uuid.uuid4())}
            row = connection.execute(_CLAIM_ID, one).first()
            if row is not None:
                claimed.append((execution_from_row(row), _lease(row)))
        return claimed

    def claim_one(self, execution_id: str, owner: str, ttl: float, admit: bool = False) -> Lease | None:
        now = utc_now()
        token = str(uuid.uuid4())
        values: dict[str, Any] = {"claimed_by": owner, "lease_token": token, "lease_expires_at": now + timedelta(seconds=ttl)}
        with self._db.write() as connection:
            if admit:
                if not self._admitted(connection, execution_id, now):
                    return None
                values["first_claimed_at"] = func.coalesce(_X.c.first_claimed_at, bindparam("at", now, type_=_TIME))
            row = connection.execute(
                update(_X)
                .where(_X.c.id == execution_id, _X.c.status.notin_(tuple(ExecutionStatus.TERMINAL)), _free(now))
                .values(**values)
                .returning(_X.c.id, _X.c.claimed_by, _X.c.lease_token, _X.c.lease_expires_at)
            ).first()
        return _lease(row) if row is not None else None

    def _admitted(self, connection: Connection, execution_id: str, now: datetime) -> bool:
        """Holds a slot already, or its queue has no limits, or they let it start now."""
        row = connection.execute(select(_X.c.queue, _X.c.first_claimed_at).where(_X.c.id == execution_id)).first()
        if row is None or row.first_claimed_at is not None:
            return row is not None
        limited = limited_queues(connection, [row.queue])
        return not limited or admits(connection, limited[0], execution_id, now, self._db.is_postgresql)

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
