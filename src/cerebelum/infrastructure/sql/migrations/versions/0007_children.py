"""Children: an execution started by a parent's `workflow` node links back to it.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-04
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    with op.batch_alter_table("executions") as batch:
        batch.add_column(sa.Column("parent_id", sa.String(64), nullable=True))
        batch.add_column(sa.Column("parent_node", sa.String(512), nullable=True))
        batch.add_column(sa.Column("depth", sa.Integer(), nullable=False, server_default=sa.text("0")))
    op.create_index("ix_executions_parent_id", "executions", ["parent_id"])


def downgrade() -> None:
    op.drop_index("ix_executions_parent_id", table_name="executions")
    with op.batch_alter_table("executions") as batch:
        for column in ("depth", "parent_node", "parent_id"):
            batch.drop_column(column)
