"""Idempotent starts: a caller's key names at most one execution (unique index; NULLs are distinct).

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-04
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    with op.batch_alter_table("executions") as batch:
        batch.add_column(sa.Column("start_key", sa.String(200), nullable=True))
    op.create_index("uq_executions_start_key", "executions", ["start_key"], unique=True)


def downgrade() -> None:
    op.drop_index("uq_executions_start_key", table_name="executions")
    with op.batch_alter_table("executions") as batch:
        batch.drop_column("start_key")
