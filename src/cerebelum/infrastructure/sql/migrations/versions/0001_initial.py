"""Initial schema: workflows, executions and the append-only events log.

Revision ID: 0001
Revises:
Create Date: 2025-11-25

Hand-written: spell out every type here; never import the live schema.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | None = None
depends_on: str | None = None


def _json(nullable: bool = False) -> sa.types.TypeEngine[Any]:
    return sa.JSON(none_as_null=nullable).with_variant(JSONB(none_as_null=nullable), "postgresql")


def _timestamp() -> sa.DateTime:
    return sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "workflows",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("name", sa.String(100), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("definition", _json(), nullable=False),
        sa.Column("digest", sa.String(64), nullable=False),
        sa.Column("created_at", _timestamp(), nullable=False),
        sa.Column("deleted_at", _timestamp(), nullable=True),
        sa.UniqueConstraint("name", "version", name="uq_workflows_name_version"),
    )
    op.create_index("ix_workflows_name", "workflows", ["name"])

    op.create_table(
        "executions",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("workflow", sa.String(100), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("input", _json(nullable=True), nullable=True),
        sa.Column("output", _json(nullable=True), nullable=True),
        sa.Column("error", _json(nullable=True), nullable=True),
        sa.Column("seed", sa.BigInteger(), nullable=False),
        sa.Column("virtual_time", sa.Boolean(), nullable=False),
        sa.Column("created_at", _timestamp(), nullable=False),
        sa.Column("started_at", _timestamp(), nullable=True),
        sa.Column("completed_at", _timestamp(), nullable=True),
        sa.Column("last_sequence", sa.Integer(), nullable=False, server_default=sa.text("-1")),
        sa.Column("updated_at", _timestamp(), nullable=False),
    )
    op.create_index("ix_executions_workflow_created_at", "executions", ["workflow", "created_at"])
    op.create_index("ix_executions_status", "executions", ["status"])

    op.create_table(
        "events",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("execution_id", sa.String(64), nullable=False),
        sa.Column("sequence", sa.Integer(), nullable=False),
        sa.Column("type", sa.String(32), nullable=False),
        sa.Column("node_id", sa.String(512), nullable=True),
        sa.Column("payload", _json(), nullable=False),
        sa.Column("timestamp", _timestamp(), nullable=False),
        sa.ForeignKeyConstraint(["execution_id"], ["executions.id"], name="fk_events_execution_id", ondelete="CASCADE"),
        sa.UniqueConstraint("execution_id", "sequence", name="uq_events_execution_sequence"),
    )


def downgrade() -> None:
    op.drop_table("events")
    op.drop_index("ix_executions_status", table_name="executions")
    op.drop_index("ix_executions_workflow_created_at", table_name="executions")
    op.drop_table("executions")
    op.drop_index("ix_workflows_name", table_name="workflows")
    op.drop_table("workflows")
