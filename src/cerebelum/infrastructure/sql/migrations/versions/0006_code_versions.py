"""Code versions: which code ran an execution and each event, and a definition's `versioning`.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-04
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    with op.batch_alter_table("executions") as batch:
        batch.add_column(sa.Column("code_version", sa.String(64), nullable=True))
        batch.add_column(sa.Column("versioning", sa.String(16), nullable=False, server_default=sa.text("'upgrade'")))
    with op.batch_alter_table("events") as batch:
        batch.add_column(sa.Column("code_version", sa.String(64), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("events") as batch:
        batch.drop_column("code_version")
    with op.batch_alter_table("executions") as batch:
        batch.drop_column("versioning")
        batch.drop_column("code_version")
