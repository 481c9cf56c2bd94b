"""Historical metric samples, one regular series per target and metric.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-28
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "metric_samples",
        sa.Column("target", sa.String(200), primary_key=True),
        sa.Column("metric", sa.String(64), primary_key=True),
        sa.Column("ts_ms", sa.BigInteger, primary_key=True),
        sa.Column("value", sa.Float, nullable=False),
        sa.Column("filled", sa.Boolean, nullable=False),
        sa.Column("origin", sa.String(32), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("metric_samples")
