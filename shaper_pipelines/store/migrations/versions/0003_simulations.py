"""Simulations dispatched to load agents and what they achieved.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-28
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "simulation_runs",
        sa.Column("run_key", sa.String(64), primary_key=True),
        sa.Column("profile_id", sa.String(100), nullable=False),
        sa.Column("profile_version", sa.Integer, nullable=False),
        sa.Column("agent_url", sa.String(300), nullable=False),
        sa.Column("resource", sa.String(20), nullable=False),
        sa.Column("intensity", sa.Float, nullable=False),
        sa.Column("dispatched_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("dispatched_by", sa.String(200), nullable=False),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("reason", sa.Text, nullable=False),
    )
    op.create_table(
        "simulation_samples",
        sa.Column("run_key", sa.String(64), sa.ForeignKey("simulation_runs.run_key", ondelete="CASCADE"),
                  primary_key=True),
        sa.Column("t", sa.Integer, primary_key=True),
        sa.Column("target", sa.Float, nullable=False),
        sa.Column("achieved", sa.Float, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("simulation_samples")
    op.drop_table("simulation_runs")
