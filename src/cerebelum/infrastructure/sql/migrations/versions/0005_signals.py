"""Interaction: the signal inbox, the execution's deadline and its fork origin.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-04
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from cerebelum.infrastructure.sql.schema import UTCDateTime, json_type

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    with op.batch_alter_table("executions") as batch:
        batch.add_column(sa.Column("signals_sent", sa.Integer(), nullable=False, server_default=sa.text("0")))
        batch.add_column(sa.Column("timeout_s", sa.Float(), nullable=True))
        batch.add_column(sa.Column("forked_from", sa.String(64), nullable=True))
        batch.add_column(sa.Column("forked_at", sa.Integer(), nullable=True))
    op.create_table(
        "signals",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column(
            "execution_id",
            sa.String(64),
            sa.ForeignKey("executions.id", ondelete="CASCADE", name="fk_signals_execution_id"),
            nullable=False,
        ),
        sa.Column("name", sa.String(100), nullable=False),
        sa.Column("payload", json_type(nullable=True), nullable=True),
        sa.Column("key", sa.String(200), nullable=True),
        sa.Column("created_at", UTCDateTime(), nullable=False),
    )
    op.create_index("ix_signals_execution_id", "signals", ["execution_id", "id"])
    op.create_index("uq_signals_execution_key", "signals", ["execution_id", "key"], unique=True)


def downgrade() -> None:
    op.drop_table("signals")
    with op.batch_alter_table("executions") as batch:
        for column in ("forked_at", "forked_from", "timeout_s", "signals_sent"):
            batch.drop_column(column)
