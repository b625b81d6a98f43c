"""Admission to limited queues (spec section 9), inside the claim's transaction.

An execution holds a slot of its queue from its first claim (`first_claimed_at`
set) until it ends: `status` not terminal. Executions never claimed wait. For a
queue with limits, a claim admits waiting executions only while

- fewer than `concurrency` executions of the queue hold a slot,
- fewer than `per_key_concurrency` of its `concurrency_key` hold one (executions
  without a key are bound by `concurrency` only),
- fewer than `rate_count` were admitted within the last `rate_period_s` seconds
  (a sliding window over `first_claimed_at`),

lower priority numbers first, then the oldest. Admissions of one queue are
serialised: on PostgreSQL by a transaction-level advisory lock on the queue's
name (so two workers claiming at the same instant count each other's
committed slots), on SQLite by its single writer lock (BEGIN IMMEDIATE).
Executions that already hold a slot (re-claimed after a parked timer or a
lapsed lease) are not admitted again: the plain claim takes them.
"""

from __future__ import annotations

from collections.abc import Collection
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, bindparam, select, text

from cerebelum.domain.execution import ExecutionStatus
from cerebelum.domain.queues import QueueSettings, Rate
from cerebelum.infrastructure.sql import schema

_Q = schema.queues
LIMITED = (_Q.c.concurrency.is_not(None)) | (_Q.c.per_key_concurrency.is_not(None)) | (_Q.c.rate_count.is_not(None))
LIMITED_NAMES = select(_Q.c.name).where(LIMITED)  # the plain claim leaves their waiting executions to admission
HOLDING = ("pending", "running", "paused")  # not terminal
assert set(HOLDING) == set(ExecutionStatus.ALL) - ExecutionStatus.TERMINAL

_SETTINGS = select(_Q).where(LIMITED).order_by(_Q.c.name)  # a fixed order: no two claims lock in opposite orders
_SETTINGS_OF = select(_Q).where(LIMITED, _Q.c.name.in_(bindparam("names", expanding=True))).order_by(_Q.c.name)

_LOCK = text("SELECT pg_advisory_xact_lock(hashtext('cerebelum.queue'), hashtext(:queue))")
_TIME = schema.UTCDateTime()
_HOLDING = "queue = :queue AND status IN ('pending', 'running', 'paused') AND first_claimed_at IS NOT NULL"
# The `status IN (...)` of `_HOLDING`, repeated word for word in `_WAITING`: SQLite uses
# the partial index `ix_executions_queue_status` only for a query that says its WHERE.
_WAITING = (  # due executions that never had a slot (a paused one is not waiting)
    "queue = :queue AND status IN ('pending', 'running', 'paused') AND status IN ('pending', 'running')"
    " AND first_claimed_at IS NULL"
    " AND (lease_expires_at IS NULL OR lease_expires_at < :now) AND (wake_at IS NULL OR wake_at <= :now)"
    # code versions: a pinned execution only for its own code version (docs/deploys.md)
    " AND (versioning != 'pinned' OR code_version IS NULL OR code_version = :claimer_version)"
)
# How many may start now: `most`, less the slots held (concurrency) and the slots
# given within the rate window (rate); a null limit leaves `most`. {least}/{greatest}
# are the dialect's names (SQLite: min/max).
_ROOM = (
    "{greatest}(0, {least}(:most,"
    f" COALESCE(:concurrency - (SELECT count(*) FROM executions WHERE {_HOLDING}), :most),"
    " COALESCE(:rate_count - (SELECT count(*) FROM executions WHERE queue = :queue AND first_claimed_at >= :since), :most)))"
)
_NEXT = f"SELECT id FROM executions WHERE {_WAITING} ORDER BY priority, created_at, id LIMIT {_ROOM}"
# With a per-key bound: the n-th waiting execution of a key may start if the key's
# slots held plus n stay within the bound (keyless ones are not bound by key).
_NEXT_PER_KEY = (
    "WITH held AS ("
    f"  SELECT concurrency_key AS k, count(*) AS n FROM executions WHERE {_HOLDING} AND concurrency_key IS NOT NULL"
    "  GROUP BY concurrency_key),"
    " ranked AS ("
    "  SELECT id, priority, created_at, concurrency_key,"
    "  row_number() OVER (PARTITION BY concurrency_key ORDER BY priority, created_at, id) AS rn"
    f"  FROM executions WHERE {_WAITING})"
    " SELECT ranked.id FROM ranked LEFT JOIN held ON held.k = ranked.concurrency_key"
    " WHERE ranked.concurrency_key IS NULL OR ranked.rn + COALESCE(held.n, 0) <= :per_key"
    f" ORDER BY ranked.priority, ranked.created_at, ranked.id LIMIT {_ROOM}"
)
# PostgreSQL leases the chosen ones in the same statement, each with a token of its own.
_LEASE_PG = (
    "UPDATE executions SET claimed_by = :owner, lease_token = gen_random_uuid()::text, lease_expires_at = :expires,"
    " wake_at = NULL, first_claimed_at = :now WHERE id IN ({chosen})"
    " RETURNING " + ", ".join(column.name for column in schema.executions.c)
)


def _statement(sql: str, postgresql: bool) -> Any:
    sql = sql.replace("{least}", "LEAST" if postgresql else "min").replace("{greatest}", "GREATEST" if postgresql else "max")
    return text(sql).bindparams(*[bindparam(name, type_=_TIME) for name in ("now", "since", "expires") if f":{name}" in sql])


_CHOOSE = {(pg, keyed): _statement(_NEXT_PER_KEY if keyed else _NEXT, pg) for pg in (False, True) for keyed in (False, True)}
_CHOOSE_AND_LEASE = {
    keyed: _statement(_LEASE_PG.replace("{chosen}", _NEXT_PER_KEY if keyed else _NEXT), True).columns(*schema.executions.c)
    for keyed in (False, True)
}


def settings_from_row(row: Any) -> QueueSettings:
    rate = Rate(row.rate_count, row.rate_period_s) if row.rate_count is not None else None
    return QueueSettings(row.name, row.concurrency, row.per_key_concurrency, rate, row.updated_at)


def limited_queues(connection: Connection, names: Collection[str] | None) -> list[QueueSettings]:
    """The settings of the queues with limits (among `names`, if given)."""
    rows = connection.execute(_SETTINGS if names is None else _SETTINGS_OF, {} if names is None else {"names": list(names)})
    return [settings_from_row(row) for row in rows]


def _values(queue: QueueSettings, now: datetime, most: int, code_version: str | None = None) -> dict[str, Any]:
    rate = queue.rate
    return {
        "claimer_version": code_version,
        "queue": queue.name,
        "now": now,
        "most": most,
        "concurrency": queue.concurrency,
        "rate_count": rate.count if rate is not None else None,
        "since": now - timedelta(seconds=rate.period_s if rate is not None else 0),
        "per_key": queue.per_key_concurrency,
    }


def admissible(
    connection: Connection, queue: QueueSettings, now: datetime, most: int, postgresql: bool, code_version: str | None = None
) -> list[str]:
    """Ids of up to `most` waiting executions of `queue` its limits let start now.
    On PostgreSQL this takes the queue's lock, held until the transaction ends:
    claim them in the same transaction."""
    if postgresql:
        connection.execute(_LOCK, {"queue": queue.name})
    choose = _CHOOSE[(postgresql, queue.per_key_concurrency is not None)]
    return [row.id for row in connection.execute(choose, _values(queue, now, most, code_version))]


def admit(connection: Connection, queue: QueueSettings, now: datetime, most: int, lease: dict[str, Any]) -> list[Any]:
    """PostgreSQL: under the queue's lock, choose and lease (with `lease`'s owner
    and expiry) up to `most` waiting executions in one statement; their rows."""
    connection.execute(_LOCK, {"queue": queue.name})
    statement = _CHOOSE_AND_LEASE[queue.per_key_concurrency is not None]
    return list(connection.execute(statement, {**_values(queue, now, most, lease.get("claimer_version")), **lease}))


def admits(connection: Connection, queue: QueueSettings, execution_id: str, now: datetime, postgresql: bool) -> bool:
    """Whether `queue`'s limits let this waiting execution start now (`run` in one
    process waits for its own execution's slot). Takes the queue's lock, as `admissible`."""
    return execution_id in admissible(connection, queue, now, 1_000_000, postgresql)
