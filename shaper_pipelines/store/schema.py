"""Tables of the profile store. Alembic migrations in ``migrations/`` create exactly these."""

from __future__ import annotations

import sqlalchemy as sa

metadata = sa.MetaData()

profile_versions = sa.Table(
    "profile_versions",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("profile_id", sa.String(100), nullable=False),
    sa.Column("version", sa.Integer, nullable=False),
    sa.Column("content_hash", sa.String(16), nullable=False),
    # Denormalised from the definition so that the common queries need no JSON functions.
    sa.Column("resource_type", sa.String(20), nullable=False),
    sa.Column("source", sa.String(20), nullable=False),
    sa.Column("priority", sa.Integer, nullable=False),
    sa.Column("trigger_kinds", sa.String(64), nullable=False, doc="',cron,event,' style, for LIKE queries"),
    sa.Column("definition", sa.Text, nullable=False, doc="canonical JSON of the profile"),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("created_by", sa.String(200), nullable=False),
    sa.UniqueConstraint("profile_id", "version", name="uq_profile_version"),
    sa.UniqueConstraint("profile_id", "content_hash", name="uq_profile_content"),
    sa.Index("ix_profile_versions_resource_type", "resource_type"),
    sa.Index("ix_profile_versions_source", "source"),
)

profile_series = sa.Table(
    "profile_series",
    metadata,
    sa.Column("version_pk", sa.Integer, sa.ForeignKey("profile_versions.id", ondelete="CASCADE"), primary_key=True),
    # Epoch milliseconds: an exact key, and the same type on SQLite and PostgreSQL.
    sa.Column("ts_ms", sa.BigInteger, primary_key=True),
    sa.Column("value", sa.Float, nullable=False),
)

metric_samples = sa.Table(
    "metric_samples",
    metadata,
    sa.Column("target", sa.String(200), primary_key=True),
    sa.Column("metric", sa.String(64), primary_key=True),
    sa.Column("ts_ms", sa.BigInteger, primary_key=True),
    sa.Column("value", sa.Float, nullable=False),
    sa.Column("filled", sa.Boolean, nullable=False, doc="interpolated, not observed"),
    sa.Column("origin", sa.String(32), nullable=False, doc="prometheus, import or demo"),
)

simulation_runs = sa.Table(
    "simulation_runs",
    metadata,
    sa.Column("run_key", sa.String(64), primary_key=True, doc="the agent's run id"),
    sa.Column("profile_id", sa.String(100), nullable=False),
    sa.Column("profile_version", sa.Integer, nullable=False),
    sa.Column("agent_url", sa.String(300), nullable=False),
    sa.Column("resource", sa.String(20), nullable=False),
    sa.Column("intensity", sa.Float, nullable=False),
    sa.Column("dispatched_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("dispatched_by", sa.String(200), nullable=False),
    sa.Column("status", sa.String(20), nullable=False, doc="dispatched, finished, stopped or failed"),
    sa.Column("reason", sa.Text, nullable=False),
    sa.Column("scaling_target", sa.String(100), doc="the scaling target whose service a capacity rehearsal measured"),
    sa.Column("service_version", sa.String(100), doc="the service's version in scaling.yaml when it was rehearsed"),
    sa.Column("started_at", sa.Float, doc="epoch seconds the agent started the load (its clock)"),
    sa.Column("ended_by", sa.String(20), doc="latency or errors: the run stopped itself on its objective"),
)

simulation_samples = sa.Table(
    "simulation_samples",
    metadata,
    sa.Column("run_key", sa.String(64), sa.ForeignKey("simulation_runs.run_key", ondelete="CASCADE"),
              primary_key=True),
    sa.Column("t", sa.Integer, primary_key=True, doc="seconds since the run started"),
    sa.Column("target", sa.Float, nullable=False),
    sa.Column("achieved", sa.Float, nullable=False),
    # What Locust saw this second (network_io only) and what the service reported; null: not measured.
    sa.Column("errors", sa.Float, doc="failed requests this second"),
    sa.Column("latency_p50_ms", sa.Float),
    sa.Column("latency_p95_ms", sa.Float),
    sa.Column("latency_p99_ms", sa.Float),
    sa.Column("service_utilisation", sa.Float, doc="0..1, the service's own measure"),
    sa.Column("service_p95_ms", sa.Float),
    sa.Column("service_p99_ms", sa.Float),
    sa.Column("service_errors", sa.Float, doc="errors per second the service counted"),
)

scaling_plans = sa.Table(
    "scaling_plans",
    metadata,
    sa.Column("plan_id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("target", sa.String(100), nullable=False, doc="the scaling target's name in scaling.yaml"),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("produced_by", sa.String(200), nullable=False, doc="a Dagster run id, or cli"),
    sa.Column("model", sa.Text, nullable=False, doc="the forecast model and version behind the plan"),
    sa.Index("ix_scaling_plans_target", "target"),
)

scaling_plan_rows = sa.Table(
    "scaling_plan_rows",
    metadata,
    sa.Column("plan_id", sa.Integer, sa.ForeignKey("scaling_plans.plan_id", ondelete="CASCADE"), primary_key=True),
    sa.Column("ts_ms", sa.BigInteger, primary_key=True, doc="UTC epoch milliseconds"),
    sa.Column("desired_capacity", sa.Integer, nullable=False),
    sa.Column("reason", sa.Text, nullable=False),
)

# The audit trail of every change shaper made, or would have made, to AWS: who, what, when, why.
scaling_actions = sa.Table(
    "scaling_actions",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("actor", sa.String(200), nullable=False),
    sa.Column("target", sa.String(100), nullable=False),
    sa.Column("kind", sa.String(8), nullable=False, doc="asg or ecs"),
    sa.Column("resource", sa.String(300), nullable=False),
    sa.Column("action", sa.String(64), nullable=False, doc="the AWS operation, e.g. put_scheduled_action"),
    sa.Column("params", sa.Text, nullable=False, doc="the operation's parameters as JSON"),
    sa.Column("reason", sa.Text, nullable=False),
    sa.Column("dry_run", sa.Boolean, nullable=False),
    sa.Column("outcome", sa.Text, nullable=False, doc="applied, would-apply or failed: <message>"),
    sa.Column("plan_id", sa.Integer, sa.ForeignKey("scaling_plans.plan_id"), nullable=True),
    sa.Index("ix_scaling_actions_target", "target"),
)

forecast_runs = sa.Table(
    "forecast_runs",
    metadata,
    sa.Column("forecast_id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("target", sa.String(200), nullable=False),
    sa.Column("metric", sa.String(64), nullable=False),
    sa.Column("issued_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("origin_ms", sa.BigInteger, nullable=False, doc="the first forecast step"),
    sa.Column("model", sa.Text, nullable=False),
    sa.Column("version", sa.String(16), nullable=False, doc="hash of model, history window and code"),
    sa.Column("backtest_mase", sa.Float, nullable=False, doc="backtest MAE over seasonal naive's"),
    sa.Column("beats_naive", sa.Boolean, nullable=False),
    sa.Column("produced_by", sa.String(200), nullable=False),
    sa.Index("ix_forecast_runs_series", "target", "metric", "origin_ms"),
)

forecast_points = sa.Table(
    "forecast_points",
    metadata,
    sa.Column("forecast_id", sa.Integer, sa.ForeignKey("forecast_runs.forecast_id", ondelete="CASCADE"),
              primary_key=True),
    sa.Column("ts_ms", sa.BigInteger, primary_key=True),
    sa.Column("yhat", sa.Float, nullable=False),
    sa.Column("yhat_lower", sa.Float, nullable=False),
    sa.Column("yhat_upper", sa.Float, nullable=False),
    sa.Column("p90", sa.Float, nullable=False),
)

# Operator switches for scaling, as a history: the newest row is in force, and every change says
# who made it and why. No row yet means the safe default (dry run, not paused).
scaling_mode_changes = sa.Table(
    "scaling_mode_changes",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("actor", sa.String(200), nullable=False),
    sa.Column("dry_run", sa.Boolean, nullable=False, doc="approvals apply as dry runs unless they say otherwise"),
    sa.Column("paused", sa.Boolean, nullable=False, doc="approvals are refused"),
    sa.Column("note", sa.Text, nullable=False),
)
