"""Leaner execution indexes: every index on `executions` is written again each
time a row changes an indexed column (start, end, first claim), so the hot path
pays for each one. `ix_executions_status` goes (`ix_executions_due` leads with
`status`); the indexes of columns most executions leave null (parent, schedule,
start key) and the queue indexes keep only the rows their queries read.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-04
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | None = None
depends_on: str | None = None

HOLDING = "status IN ('pending', 'running', 'paused')"
# name -> (columns, unique, predicate)
PARTIAL = {
    "ix_executions_parent_id": (["parent_id"], False, "parent_id IS NOT NULL"),
    "ix_executions_schedule": (["schedule_name", "created_at"], False, "schedule_name IS NOT NULL"),
    "uq_executions_start_key": (["start_key"], True, "start_key IS NOT NULL"),
    "ix_executions_queue_status": (["queue", "status"], False, HOLDING),
    "ix_executions_queue_claimed": (["queue", "first_claimed_at"], False, "first_claimed_at IS NOT NULL"),
}


def _create(name: str, columns: list[str], unique: bool, where: str | None) -> None:
    predicate = sa.text(where) if where else None
    op.create_index(name, "executions", columns, unique=unique, postgresql_where=predicate, sqlite_where=predicate)


def upgrade() -> None:
    op.drop_index("ix_executions_status", table_name="executions")
    for name, (columns, unique, where) in PARTIAL.items():
        op.drop_index(name, table_name="executions")
        _create(name, columns, unique, where)


def downgrade() -> None:
    for name, (columns, unique, _) in PARTIAL.items():
        op.drop_index(name, table_name="executions")
        _create(name, columns, unique, None)
    op.create_index("ix_executions_status", "executions", ["status"])
