"""The SQL adapter of the schedule repository: rows, compare-and-set, recent ticks."""

from __future__ import annotations

from typing import Any

from sqlalchemy import delete, insert, select, update
from sqlalchemy.engine import Row

from cerebelum.domain.errors import Conflict, NotFound
from cerebelum.domain.execution import Execution
from cerebelum.domain.schedules import Schedule, Tick
from cerebelum.infrastructure.sql import schema
from cerebelum.infrastructure.sql.database import Database
from cerebelum.infrastructure.sql.rows import execution_from_row

_S, _T, _X = schema.schedules, schema.schedule_ticks, schema.executions
KEEP_TICKS = 100  # history entries kept per schedule
MAX_REASON = 500


def _values(schedule: Schedule) -> dict[str, Any]:
    return {
        "workflow": schedule.workflow,
        "version": schedule.version,
        "input": schedule.input,
        "cron": schedule.cron,
        "every_s": schedule.every_s,
        "timezone": schedule.timezone,
        "overlap": schedule.overlap,
        "catchup": schedule.catchup,
        "state": schedule.state,
        "created_at": schedule.created_at,
        "last_tick": schedule.last_tick,
        "next_fire": schedule.next_fire,
    }


def _schedule(row: Row[Any]) -> Schedule:
    return Schedule(
        name=row.name,
        workflow=row.workflow,
        version=row.version,
        input=row.input,
        cron=row.cron,
        every_s=row.every_s,
        timezone=row.timezone,
        overlap=row.overlap,
        catchup=row.catchup,
        state=row.state,
        created_at=row.created_at,
        last_tick=row.last_tick,
        next_fire=row.next_fire,
        revision=row.revision,
    )


def _tick(row: Row[Any]) -> Tick:
    return Tick(row.schedule, row.tick, row.outcome, row.recorded_at, row.execution_id, row.reason)


class SqlSchedules:
    def __init__(self, db: Database) -> None:
        self._db = db

    def add(self, schedule: Schedule) -> None:
        with self._db.write(f"schedule '{schedule.name}' already exists") as connection:
            connection.execute(insert(_S).values(name=schedule.name, revision=schedule.revision, **_values(schedule)))

    def get(self, name: str) -> Schedule:
        with self._db.read() as connection:
            row = connection.execute(select(_S).where(_S.c.name == name)).first()
        if row is None:
            raise NotFound(f"unknown schedule '{name}'")
        return _schedule(row)

    def all(self, state: str | None = None) -> list[Schedule]:
        query = select(_S) if state is None else select(_S).where(_S.c.state == state)
        with self._db.read() as connection:
            return [_schedule(row) for row in connection.execute(query.order_by(_S.c.name))]

    def update(self, schedule: Schedule) -> bool:
        with self._db.write() as connection:
            done = connection.execute(
                update(_S)
                .where(_S.c.name == schedule.name, _S.c.revision == schedule.revision)
                .values(revision=schedule.revision + 1, **_values(schedule))
            ).rowcount
            if not done and connection.execute(select(_S.c.name).where(_S.c.name == schedule.name)).first() is None:
                raise NotFound(f"unknown schedule '{schedule.name}'")
        return bool(done)

    def delete(self, name: str) -> None:
        with self._db.write() as connection:
            connection.execute(delete(_T).where(_T.c.schedule == name))
            done = connection.execute(delete(_S).where(_S.c.name == name)).rowcount
        if not done:
            raise NotFound(f"unknown schedule '{name}'")

    def record(self, tick: Tick) -> bool:
        reason = tick.reason[:MAX_REASON] if tick.reason else None
        try:
            with self._db.write() as connection:
                connection.execute(
                    insert(_T).values(
                        schedule=tick.schedule,
                        tick=tick.tick,
                        outcome=tick.outcome,
                        execution_id=tick.execution_id,
                        reason=reason,
                        recorded_at=tick.recorded_at,
                    )
                )
                oldest_kept = (
                    select(_T.c.tick).where(_T.c.schedule == tick.schedule).order_by(_T.c.tick.desc()).offset(KEEP_TICKS - 1)
                ).limit(1).scalar_subquery()
                connection.execute(delete(_T).where(_T.c.schedule == tick.schedule, _T.c.tick < oldest_kept))
        except Conflict:  # that tick is recorded already (another process), or the schedule was deleted
            return False
        return True

    def ticks(self, name: str, limit: int = 20) -> list[Tick]:
        query = select(_T).where(_T.c.schedule == name).order_by(_T.c.tick.desc()).limit(limit)
        with self._db.read() as connection:
            return [_tick(row) for row in connection.execute(query)]

    def latest_execution(self, name: str) -> Execution | None:
        query = select(_X).where(_X.c.schedule_name == name).order_by(_X.c.created_at.desc(), _X.c.id.desc()).limit(1)
        with self._db.read() as connection:
            row = connection.execute(query).first()
        return execution_from_row(row) if row is not None else None
