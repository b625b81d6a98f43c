"""Schedules: the schedules table, their recent ticks, and the tick an execution was started for.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-04
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    with op.batch_alter_table("executions") as batch:
        batch.add_column(sa.Column("schedule_name", sa.String(100), nullable=True))
        batch.add_column(sa.Column("schedule_tick", sa.DateTime(timezone=True), nullable=True))
    op.create_index("ix_executions_schedule", "executions", ["schedule_name", "created_at"])
    op.create_table(
        "schedules",
        sa.Column("name", sa.String(100), primary_key=True),
        sa.Column("workflow", sa.String(100), nullable=False),
        sa.Column("version", sa.Integer, nullable=True),
        sa.Column("input", sa.JSON().with_variant(JSONB(), "postgresql"), nullable=True),
        sa.Column("cron", sa.String(200), nullable=True),
        sa.Column("every_s", sa.Integer, nullable=True),
        sa.Column("timezone", sa.String(64), nullable=False),
        sa.Column("overlap", sa.String(8), nullable=False),
        sa.Column("catchup", sa.String(8), nullable=False),
        sa.Column("state", sa.String(8), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_tick", sa.DateTime(timezone=True), nullable=True),
        sa.Column("next_fire", sa.DateTime(timezone=True), nullable=True),
        sa.Column("revision", sa.Integer, nullable=False),
    )
    op.create_table(
        "schedule_ticks",
        sa.Column(
            "schedule",
            sa.String(100),
            sa.ForeignKey("schedules.name", ondelete="CASCADE", name="fk_schedule_ticks_schedule"),
            primary_key=True,
        ),
        sa.Column("tick", sa.DateTime(timezone=True), primary_key=True),
        sa.Column("outcome", sa.String(16), nullable=False),
        sa.Column("execution_id", sa.String(64), nullable=True),
        sa.Column("reason", sa.String(500), nullable=True),
        sa.Column("recorded_at", sa.DateTime(timezone=True), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("schedule_ticks")
    op.drop_table("schedules")
    op.drop_index("ix_executions_schedule", table_name="executions")
    with op.batch_alter_table("executions") as batch:
        batch.drop_column("schedule_tick")
        batch.drop_column("schedule_name")
