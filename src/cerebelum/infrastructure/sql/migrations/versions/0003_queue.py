"""Executions as a queue: leases with fencing tokens, parked timers, control requests.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-25
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    with op.batch_alter_table("executions") as batch:
        batch.add_column(sa.Column("claimed_by", sa.String(128), nullable=True))
        batch.add_column(sa.Column("lease_token", sa.String(36), nullable=True))
        batch.add_column(sa.Column("lease_expires_at", sa.DateTime(timezone=True), nullable=True))
        batch.add_column(sa.Column("wake_at", sa.DateTime(timezone=True), nullable=True))
        batch.add_column(sa.Column("control", sa.String(16), nullable=True))
    op.create_index("ix_executions_due", "executions", ["status", "wake_at"])


def downgrade() -> None:
    op.drop_index("ix_executions_due", table_name="executions")
    with op.batch_alter_table("executions") as batch:
        for column in ("control", "wake_at", "lease_expires_at", "lease_token", "claimed_by"):
            batch.drop_column(column)
