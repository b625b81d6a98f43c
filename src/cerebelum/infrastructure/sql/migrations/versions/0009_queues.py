"""Queues and flow control: each execution's queue, priority and concurrency key,
the time it first got a slot, and the queues' limits.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-04
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    op.create_table(
        "queues",
        sa.Column("name", sa.String(100), primary_key=True),
        sa.Column("concurrency", sa.Integer, nullable=True),
        sa.Column("per_key_concurrency", sa.Integer, nullable=True),
        sa.Column("rate_count", sa.Integer, nullable=True),
        sa.Column("rate_period_s", sa.Integer, nullable=True),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    )
    with op.batch_alter_table("executions") as batch:
        batch.add_column(sa.Column("queue", sa.String(100), nullable=False, server_default=sa.text("'default'")))
        batch.add_column(sa.Column("priority", sa.Integer, nullable=False, server_default=sa.text("500")))
        batch.add_column(sa.Column("concurrency_key", sa.String(200), nullable=True))
        batch.add_column(sa.Column("first_claimed_at", sa.DateTime(timezone=True), nullable=True))
    # Executions that ran before: they got their slot when they started.
    op.execute(
        "UPDATE executions SET first_claimed_at = COALESCE(started_at, created_at)"
        " WHERE last_sequence >= 0 OR claimed_by IS NOT NULL"
    )
    op.create_index("ix_executions_queue_status", "executions", ["queue", "status"])
    op.create_index("ix_executions_queue_claimed", "executions", ["queue", "first_claimed_at"])


def downgrade() -> None:
    op.drop_index("ix_executions_queue_claimed", table_name="executions")
    op.drop_index("ix_executions_queue_status", table_name="executions")
    with op.batch_alter_table("executions") as batch:
        for column in ("first_claimed_at", "concurrency_key", "priority", "queue"):
            batch.drop_column(column)
    op.drop_table("queues")
