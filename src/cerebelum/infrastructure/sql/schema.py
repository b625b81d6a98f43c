"""The one SQLAlchemy Core schema, shared by SQLite and PostgreSQL.

Migrations in `migrations/versions` must produce exactly this; a test compares
them. Dialect differences stay in the column types below.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    DateTime,
    Dialect,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    UniqueConstraint,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.types import TypeDecorator, TypeEngine


class UTCDateTime(TypeDecorator[datetime]):
    """A timestamp that is timezone-aware UTC in and out.

    SQLite has no time zones: values are stored as naive UTC text and made
    aware again on the way out. A naive value on the way in is taken as UTC.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        value = value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def json_type(nullable: bool = False) -> TypeEngine[Any]:
    """JSON text on SQLite, JSONB on PostgreSQL; Python None is SQL NULL if nullable."""
    return JSON(none_as_null=nullable).with_variant(JSONB(none_as_null=nullable), "postgresql")


metadata = MetaData()


def _partial(name: str, columns: list[str], where: str, unique: bool = False) -> Index:
    """An index of only the rows matching `where`, on both dialects."""
    return Index(name, *columns, unique=unique, postgresql_where=text(where), sqlite_where=text(where))


workflows = Table(
    "workflows",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("name", String(100), nullable=False),
    Column("version", Integer, nullable=False),
    Column("definition", json_type(), nullable=False),
    Column("digest", String(64), nullable=False),
    Column("created_at", UTCDateTime(), nullable=False),
    Column("deleted_at", UTCDateTime(), nullable=True),
    UniqueConstraint("name", "version", name="uq_workflows_name_version"),
    Index("ix_workflows_name", "name"),
)

executions = Table(
    "executions",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("workflow", String(100), nullable=False),
    Column("version", Integer, nullable=False),
    Column("status", String(16), nullable=False),
    Column("input", json_type(nullable=True), nullable=True),
    Column("output", json_type(nullable=True), nullable=True),
    Column("error", json_type(nullable=True), nullable=True),
    Column("seed", BigInteger, nullable=False),
    Column("virtual_time", Boolean, nullable=False),
    Column("created_at", UTCDateTime(), nullable=False),
    Column("started_at", UTCDateTime(), nullable=True),
    Column("completed_at", UTCDateTime(), nullable=True),
    Column("last_sequence", Integer, nullable=False, server_default=text("-1")),
    Column("updated_at", UTCDateTime(), nullable=False),
    # The queue: who holds the execution, until when (fencing by token), when a
    # parked timer makes it due again, and a pause/resume/cancel request.
    Column("claimed_by", String(128), nullable=True),
    Column("lease_token", String(36), nullable=True),
    Column("lease_expires_at", UTCDateTime(), nullable=True),
    Column("wake_at", UTCDateTime(), nullable=True),
    Column("control", String(16), nullable=True),
    Column("start_key", String(200), nullable=True),  # idempotent starts: one execution per key (spec section 5)
    # Interaction: signals offered to its inbox so far, its own deadline, and what it was forked from.
    Column("signals_sent", Integer, nullable=False, server_default=text("0")),
    Column("timeout_s", Float, nullable=True),
    Column("forked_from", String(64), nullable=True),
    Column("forked_at", Integer, nullable=True),
    # Code versions (docs/deploys.md): the latest that ran it; "pinned" is claimed only by that one.
    Column("code_version", String(64), nullable=True),
    Column("versioning", String(16), nullable=False, server_default=text("'upgrade'")),
    # Children (interaction spec section 4): the parent execution and node, and how deep it is.
    Column("parent_id", String(64), nullable=True),
    Column("parent_node", String(512), nullable=True),
    Column("depth", Integer, nullable=False, server_default=text("0")),
    Column("schedule_name", String(100), nullable=True),  # started by this schedule's tick (spec section 6)
    Column("schedule_tick", UTCDateTime(), nullable=True),
    # Flow control (spec section 9): an execution holds a slot of its queue from
    # its first claim (first_claimed_at) until it ends.
    Column("queue", String(100), nullable=False, server_default=text("'default'")),
    Column("priority", Integer, nullable=False, server_default=text("500")),
    Column("concurrency_key", String(200), nullable=True),
    Column("first_claimed_at", UTCDateTime(), nullable=True),
    # Each index is written again whenever a row changes one of its columns (start,
    # first claim, end): the partial ones leave out the rows their queries never read.
    Index("ix_executions_workflow_created_at", "workflow", "created_at"),
    Index("ix_executions_due", "status", "wake_at"),  # the claim; and any lookup by status
    _partial("ix_executions_schedule", ["schedule_name", "created_at"], "schedule_name IS NOT NULL"),
    _partial("uq_executions_start_key", ["start_key"], "start_key IS NOT NULL", unique=True),
    _partial("ix_executions_parent_id", ["parent_id"], "parent_id IS NOT NULL"),
    # Per queue: slots held and executions waiting; starts within a rate window.
    _partial("ix_executions_queue_status", ["queue", "status"], "status IN ('pending', 'running', 'paused')"),
    _partial("ix_executions_queue_claimed", ["queue", "first_claimed_at"], "first_claimed_at IS NOT NULL"),
)

# A queue's limits; no row (or every limit null) = unlimited.
queues = Table(
    "queues",
    metadata,
    Column("name", String(100), primary_key=True),
    Column("concurrency", Integer, nullable=True),
    Column("per_key_concurrency", Integer, nullable=True),
    Column("rate_count", Integer, nullable=True),
    Column("rate_period_s", Integer, nullable=True),
    Column("updated_at", UTCDateTime(), nullable=False),
)

events = Table(
    "events",
    metadata,
    Column("id", String(36), primary_key=True),
    Column(
        "execution_id",
        String(64),
        ForeignKey("executions.id", ondelete="CASCADE", name="fk_events_execution_id"),
        nullable=False,
    ),
    Column("sequence", Integer, nullable=False),
    Column("type", String(32), nullable=False),
    Column("node_id", String(512), nullable=True),
    Column("payload", json_type(), nullable=False),
    Column("timestamp", UTCDateTime(), nullable=False),
    # Version stamps: which engine and which workflow version wrote the event.
    Column("engine_version", String(32), nullable=True),
    Column("workflow_version", Integer, nullable=True),
    Column("code_version", String(64), nullable=True),  # the code version of the process that wrote it
    # The log's guarantee: an append never overwrites an existing sequence.
    UniqueConstraint("execution_id", "sequence", name="uq_events_execution_sequence"),
)

# A signal's inbox: written by the sender, moved into the log (`signal_received`,
# carrying the row's id) by whoever holds the execution's lease.
signals = Table(
    "signals",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column(
        "execution_id",
        String(64),
        ForeignKey("executions.id", ondelete="CASCADE", name="fk_signals_execution_id"),
        nullable=False,
    ),
    Column("name", String(100), nullable=False),
    Column("payload", json_type(nullable=True), nullable=True),
    Column("key", String(200), nullable=True),
    Column("created_at", UTCDateTime(), nullable=False),
    Index("ix_signals_execution_id", "execution_id", "id"),
    Index("uq_signals_execution_key", "execution_id", "key", unique=True),
)

# Schedules (spec section 6): a row each; `last_tick` / `next_fire` advance by
# compare-and-set on `revision`, the ticks' executions are made unique by their
# start key `schedule:<name>:<tick>`.
schedules = Table(
    "schedules",
    metadata,
    Column("name", String(100), primary_key=True),
    Column("workflow", String(100), nullable=False),
    Column("version", Integer, nullable=True),
    Column("input", json_type(nullable=True), nullable=True),
    Column("cron", String(200), nullable=True),
    Column("every_s", Integer, nullable=True),
    Column("timezone", String(64), nullable=False),
    Column("overlap", String(8), nullable=False),
    Column("catchup", String(8), nullable=False),
    Column("state", String(8), nullable=False),
    Column("created_at", UTCDateTime(), nullable=False),
    Column("last_tick", UTCDateTime(), nullable=True),
    Column("next_fire", UTCDateTime(), nullable=True),
    Column("revision", Integer, nullable=False),
)

# A schedule's recent history: ticks started, skipped (and why) or missed.
schedule_ticks = Table(
    "schedule_ticks",
    metadata,
    Column("schedule", String(100), ForeignKey("schedules.name", ondelete="CASCADE", name="fk_schedule_ticks_schedule"),
           primary_key=True),
    Column("tick", UTCDateTime(), primary_key=True),
    Column("outcome", String(16), nullable=False),
    Column("execution_id", String(64), nullable=True),
    Column("reason", String(500), nullable=True),
    Column("recorded_at", UTCDateTime(), nullable=False),
)
