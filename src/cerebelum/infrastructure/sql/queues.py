"""Queue settings and what each queue holds (spec section 9), on SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import Collection
from datetime import UTC, datetime

from sqlalchemy import delete, func, select, text, update
from sqlalchemy.engine import Connection

from cerebelum.domain.errors import NotFound
from cerebelum.domain.queues import QueueSettings, QueueStats
from cerebelum.infrastructure.sql import schema
from cerebelum.infrastructure.sql.admission import settings_from_row
from cerebelum.infrastructure.sql.database import Database, utc_now

_Q, _X = schema.queues, schema.executions
# Literal statuses (not bound parameters), as in the partial index's WHERE, so the
# planner can use `ix_executions_queue_status` (PostgreSQL plans these generically).
_LIVE = text("status IN ('pending', 'running', 'paused')")
_WAITING = (_LIVE, text("status IN ('pending', 'running')"), _X.c.first_claimed_at.is_(None))
_RUNNING = (_LIVE, _X.c.first_claimed_at.is_not(None))


class SqlQueues:
    def __init__(self, db: Database) -> None:
        self._db = db

    def put(self, settings: QueueSettings) -> QueueSettings:
        rate = settings.rate
        values = {
            "concurrency": settings.concurrency,
            "per_key_concurrency": settings.per_key_concurrency,
            "rate_count": rate.count if rate is not None else None,
            "rate_period_s": rate.period_s if rate is not None else None,
            "updated_at": utc_now(),
        }
        with self._db.write() as connection:  # a second writer's insert conflicts: the caller may try again
            done = connection.execute(update(_Q).where(_Q.c.name == settings.name).values(**values)).rowcount
            if not done:
                connection.execute(_Q.insert().values(name=settings.name, **values))
            self._db.notify_queue(connection, "")  # raised limits may let waiting executions start
            return self._get(connection, settings.name) or settings

    def get(self, name: str) -> QueueSettings | None:
        with self._db.read() as connection:
            return self._get(connection, name)

    @staticmethod
    def _get(connection: Connection, name: str) -> QueueSettings | None:
        row = connection.execute(select(_Q).where(_Q.c.name == name)).first()
        return settings_from_row(row) if row is not None else None

    def all(self) -> list[QueueSettings]:
        with self._db.read() as connection:
            return [settings_from_row(row) for row in connection.execute(select(_Q).order_by(_Q.c.name))]

    def delete(self, name: str) -> None:
        with self._db.write() as connection:
            if not connection.execute(delete(_Q).where(_Q.c.name == name)).rowcount:
                raise NotFound(f"queue '{name}' has no settings")
            self._db.notify_queue(connection, "")  # its waiting executions are unlimited now

    def stats(self, names: Collection[str] | None = None) -> dict[str, QueueStats]:
        waiting = select(_X.c.queue, func.count(), func.min(_X.c.created_at)).where(*_WAITING).group_by(_X.c.queue)
        running = select(_X.c.queue, func.count()).where(*_RUNNING).group_by(_X.c.queue)
        if names is not None:
            waiting, running = waiting.where(_X.c.queue.in_(list(names))), running.where(_X.c.queue.in_(list(names)))
        found: dict[str, QueueStats] = {}
        with self._db.read() as connection:
            for name, count, oldest in connection.execute(waiting):
                found[name] = QueueStats(waiting=count, oldest_waiting=_aware(oldest))
            for name, count in connection.execute(running):
                before = found.get(name, QueueStats())
                found[name] = QueueStats(before.waiting, count, before.oldest_waiting)
        return found

    def admitted_since(self, since: datetime, limit: int = 10_000) -> list[tuple[str, datetime, datetime]]:
        """(queue, created_at, first_claimed_at) of executions that got their slot after `since`, oldest first."""
        query = (
            select(_X.c.queue, _X.c.created_at, _X.c.first_claimed_at)
            .where(_X.c.first_claimed_at > since)
            .order_by(_X.c.first_claimed_at)
            .limit(limit)
        )
        with self._db.read() as connection:
            return [(row[0], row[1], row[2]) for row in connection.execute(query)]


def _aware(moment: datetime | str | None) -> datetime | None:
    """`min()` over a SQLite column may come back as its (naive UTC) text."""
    if isinstance(moment, str):
        moment = datetime.fromisoformat(moment)
    if moment is None:
        return None
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)
