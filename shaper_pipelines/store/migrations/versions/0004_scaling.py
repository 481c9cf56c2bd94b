"""Scaling plans and the audit trail of scaling actions.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-28
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "scaling_plans",
        sa.Column("plan_id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("target", sa.String(100), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("produced_by", sa.String(200), nullable=False),
        sa.Column("model", sa.Text, nullable=False),
    )
    op.create_index("ix_scaling_plans_target", "scaling_plans", ["target"])
    op.create_table(
        "scaling_plan_rows",
        sa.Column("plan_id", sa.Integer, sa.ForeignKey("scaling_plans.plan_id", ondelete="CASCADE"),
                  primary_key=True),
        sa.Column("ts_ms", sa.BigInteger, primary_key=True),
        sa.Column("desired_capacity", sa.Integer, nullable=False),
        sa.Column("reason", sa.Text, nullable=False),
    )
    op.create_table(
        "scaling_actions",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("actor", sa.String(200), nullable=False),
        sa.Column("target", sa.String(100), nullable=False),
        sa.Column("kind", sa.String(8), nullable=False),
        sa.Column("resource", sa.String(300), nullable=False),
        sa.Column("action", sa.String(64), nullable=False),
        sa.Column("params", sa.Text, nullable=False),
        sa.Column("reason", sa.Text, nullable=False),
        sa.Column("dry_run", sa.Boolean, nullable=False),
        sa.Column("outcome", sa.Text, nullable=False),
        sa.Column("plan_id", sa.Integer, sa.ForeignKey("scaling_plans.plan_id"), nullable=True),
    )
    op.create_index("ix_scaling_actions_target", "scaling_actions", ["target"])


def downgrade() -> None:
    op.drop_index("ix_scaling_actions_target", "scaling_actions")
    op.drop_table("scaling_actions")
    op.drop_table("scaling_plan_rows")
    op.drop_index("ix_scaling_plans_target", "scaling_plans")
    op.drop_table("scaling_plans")
