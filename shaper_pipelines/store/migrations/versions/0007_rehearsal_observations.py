"""What a rehearsal saw of the service under test, not only of its own load.

simulation_runs: the scaling target a rehearsal measured, the service version it ran against,
when its load started (the agent's clock, to query Prometheus over exactly its seconds) and what
ended it when it stopped itself. simulation_samples: per second, what Locust saw (failures and
latency quantiles) and what the service reported (utilisation, latency quantiles, errors). All
nullable: CPU, memory and disk rehearsals have none of it, and older rows predate it.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-02
"""

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

RUN_COLUMNS = [
    ("scaling_target", sa.String(100)),
    ("service_version", sa.String(100)),
    ("started_at", sa.Float),
    ("ended_by", sa.String(20)),
]
SAMPLE_COLUMNS = ["errors", "latency_p50_ms", "latency_p95_ms", "latency_p99_ms",
                  "service_utilisation", "service_p95_ms", "service_p99_ms", "service_errors"]


def upgrade() -> None:
    # batch mode: SQLite cannot ALTER a table beyond ADD COLUMN, and alembic copes the same way
    # on both backends.
    with op.batch_alter_table("simulation_runs") as batch:
        for name, kind in RUN_COLUMNS:
            batch.add_column(sa.Column(name, kind, nullable=True))
    with op.batch_alter_table("simulation_samples") as batch:
        for name in SAMPLE_COLUMNS:
            batch.add_column(sa.Column(name, sa.Float, nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("simulation_samples") as batch:
        for name in reversed(SAMPLE_COLUMNS):
            batch.drop_column(name)
    with op.batch_alter_table("simulation_runs") as batch:
        for name, _ in reversed(RUN_COLUMNS):
            batch.drop_column(name)
