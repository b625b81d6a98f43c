"""The signal inbox in SQL: senders write here; the lease holder moves signals into the log.

An offer locks the execution row (PostgreSQL `FOR UPDATE`; SQLite's one
writer lock) so a key is checked, the signal kept and the row's count raised
atomically, and a terminal execution refuses it. When nobody holds the
execution, the same transaction appends the `signal_received` event and makes
the execution claimable: a signal to a parked execution costs one transaction.
"""

from __future__ import annotations

from collections.abc import Collection
from datetime import datetime
from typing import Any

from sqlalchemy import bindparam, insert, select, update

from cerebelum.domain.errors import Conflict, NotFound
from cerebelum.domain.events import EventType
from cerebelum.domain.execution import ExecutionStatus
from cerebelum.domain.ports import EventStamp, InboxSignal, Offered
from cerebelum.infrastructure.sql import schema
from cerebelum.infrastructure.sql.database import Database
from cerebelum.infrastructure.sql.rows import event_values

_S, _X, _E = schema.signals, schema.executions, schema.events
_ROW_FOR_OFFER = (
    select(_X.c.status, _X.c.last_sequence, _X.c.version, _X.c.lease_expires_at, _X.c.control)
    .where(_X.c.id == bindparam("id"))
    .with_for_update()
)


class SqlSignals:
    def __init__(self, db: Database) -> None:
        self._db = db

    def offer(
        self, execution_id: str, name: str, payload: Any, key: str | None, now: datetime, stamp: EventStamp | None = None
    ) -> Offered:
        with self._db.write() as connection:
            row = connection.execute(_ROW_FOR_OFFER, {"id": execution_id}).first()
            if row is None:
                raise NotFound(f"unknown execution '{execution_id}'")
            if key is not None:  # a repeated key gets the first one, even once the execution ended
                first = connection.execute(select(_S.c.id).where(_S.c.execution_id == execution_id, _S.c.key == key)).scalar()
                if first is not None:
                    return Offered(int(first), True)
            if row.status in ExecutionStatus.TERMINAL:
                raise Conflict(f"execution {execution_id} is {row.status}: it takes no more signals")
            signal_id = connection.execute(
                insert(_S)
                .values(execution_id=execution_id, name=name, payload=payload, key=key, created_at=now)
                .returning(_S.c.id)
            ).scalar_one()
            counted: dict[str, Any] = {"signals_sent": _X.c.signals_sent + 1}
            free = row.lease_expires_at is None or row.lease_expires_at < now
            if stamp is None or not free or row.last_sequence < 0 or row.control is not None:  # a request: the sender acts on it
                connection.execute(update(_X).where(_X.c.id == execution_id).values(**counted))
                return Offered(int(signal_id), False)
            # Nobody holds it (parked on a `wait`, paused, between two claims): the row lock
            # makes this transaction its holder, so the event goes in the log here and now.
            signal = InboxSignal(int(signal_id), name, payload, key)
            event = signal.received(execution_id, row.last_sequence + 1, row.version, stamp)
            connection.execute(insert(_E).values(**event_values(event)))
            connection.execute(
                update(_X)
                .where(_X.c.id == execution_id)
                .values(
                    **counted, last_sequence=event.sequence, updated_at=now, wake_at=None,
                    claimed_by=None, lease_token=None, lease_expires_at=None,  # a lapsed holder must not write on
                )
            )  # fmt: skip
            self._db.notify_appended(connection, execution_id, event.sequence, row.status, stamp.origin)
        return Offered(int(signal_id), False, event)

    def pending(self, execution_id: str, delivered: Collection[int]) -> list[InboxSignal]:
        query = select(_S.c.id, _S.c.name, _S.c.payload, _S.c.key).where(_S.c.execution_id == execution_id)
        with self._db.read() as connection:
            rows = connection.execute(query.order_by(_S.c.id)).all()
        return [InboxSignal(row.id, row.name, row.payload, row.key) for row in rows if row.id not in delivered]

    def sequence_of(self, execution_id: str, signal_id: int) -> int | None:
        query = select(_E.c.sequence).where(
            _E.c.execution_id == execution_id,
            _E.c.type == EventType.SIGNAL_RECEIVED,
            _E.c.payload["id"].as_integer() == signal_id,
        )
        with self._db.read() as connection:
            found = connection.execute(query.limit(1)).scalar()
        return int(found) if found is not None else None


__all__ = ["SqlSignals"]
