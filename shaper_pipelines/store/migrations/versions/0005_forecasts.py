"""Forecasts as issued, so that realised metrics can judge them later.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-28
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "forecast_runs",
        sa.Column("forecast_id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("target", sa.String(200), nullable=False),
        sa.Column("metric", sa.String(64), nullable=False),
        sa.Column("issued_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("origin_ms", sa.BigInteger, nullable=False),
        sa.Column("model", sa.Text, nullable=False),
        sa.Column("version", sa.String(16), nullable=False),
        sa.Column("backtest_mase", sa.Float, nullable=False),
        sa.Column("beats_naive", sa.Boolean, nullable=False),
        sa.Column("produced_by", sa.String(200), nullable=False),
    )
    op.create_index("ix_forecast_runs_series", "forecast_runs", ["target", "metric", "origin_ms"])
    op.create_table(
        "forecast_points",
        sa.Column("forecast_id", sa.Integer, sa.ForeignKey("forecast_runs.forecast_id", ondelete="CASCADE"),
                  primary_key=True),
        sa.Column("ts_ms", sa.BigInteger, primary_key=True),
        sa.Column("yhat", sa.Float, nullable=False),
        sa.Column("yhat_lower", sa.Float, nullable=False),
        sa.Column("yhat_upper", sa.Float, nullable=False),
        sa.Column("p90", sa.Float, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("forecast_points")
    op.drop_index("ix_forecast_runs_series", table_name="forecast_runs")
    op.drop_table("forecast_runs")
