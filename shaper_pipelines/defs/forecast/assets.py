"""Forecasts, the capacity model and scaling plans.

``demand_forecast`` is partitioned per history series ("target:metric"), so forecasting a fleet
is a backfill that fans out one run per series (in parallel under the run queue, or per pod with
dagster-k8s). The rest is small and per scaling target: what one instance serves
(``capacity_model``), what utilisation the forecast means (``utilisation_forecast``) and the floor to
hold (``scaling_plan``), stored with its reasons for ``apply_scaling_job``.
"""

import os
from pathlib import Path

import dagster as dg
import numpy as np
import pandas as pd

from shaper_pipelines.defs.history.assets import CONFIG as METRICS, history_key
from shaper_pipelines.resources.database import DatabaseResource

SERIES = [f"{t}:{m}" for t, m in METRICS.series()]
series_partitions = dg.StaticPartitionsDefinition(SERIES)
ALL_HISTORY = [dg.AssetDep(history_key(t, m), partition_mapping=dg.AllPartitionMapping())
               for t, m in METRICS.series()]


def scaling_config_path() -> Path:
    from shaper_pipelines.settings import project_root

    return Path(os.environ.get("SHAPER_SCALING_CONFIG") or project_root() / "profiles_data" / "scaling.yaml")


def load_scaling():
    from shaper_pipelines.lib.scaling_config import load_scaling_config

    return load_scaling_config(scaling_config_path(), METRICS)


class ForecastConfig(dg.Config):
    lookback_days: int = 28  # history each forecast is fitted and backtested on
    horizon_hours: int = 48
    models: list[str] = []  # empty: the fast candidates and Prophet
    backtest_days: int = 4
    # A UTC date: forecast from the history before it, as if it were issued then (to judge the
    # forecasting on days that have already happened). Empty: now.
    as_of: str = ""


def _history(database: DatabaseResource, target: str, metric: str, days: int, as_of: str = "") -> pd.Series:
    """The stored series over the ``days`` whole days before ``as_of`` (a UTC date; default: up to
    now), gaps interpolated."""
    today = pd.Timestamp(as_of, tz="UTC").floor("D") - pd.Timedelta(days=1) if as_of else \
        pd.Timestamp.now(tz="UTC").floor("D")
    with database.metric_store() as store:
        frame = store.read(target, metric, today - pd.Timedelta(days=days), today + pd.Timedelta(days=1))
    if len(frame) < 2:
        raise dg.Failure(f"{target}/{metric}: no stored history in the last {days} days; materialise "
                         f"historical_metrics for it first")
    return frame["value"].interpolate(limit_direction="both")


FORECAST_CODE_VERSION = "1"  # bump when the forecasting logic changes: it is part of each forecast's version
# Re-fit when new history lands (and not while a fit of the same partition is running).
REFIT = (dg.AutomationCondition.any_deps_updated() & ~dg.AutomationCondition.in_progress()).with_label(
    "re-fit when its inputs change")


@dg.asset(
    partitions_def=series_partitions,
    group_name="forecast",
    kinds={"python", "prophet"},
    owners=["team:platform"],
    deps=ALL_HISTORY,
    code_version=FORECAST_CODE_VERSION,
    automation_condition=REFIT,
    check_specs=[
        dg.AssetCheckSpec("beats_seasonal_naive", asset="demand_forecast", blocking=True,
                          description="The chosen forecast's backtest MAE is below seasonal naive's. When it "
                                      "is not, the published forecast is seasonal naive and plans ignore it "
                                      "(a warning: plans go on, from history alone)."),
        dg.AssetCheckSpec("forecast_is_sane", asset="demand_forecast", blocking=True,
                          description="Every step is finite, ordered lower <= yhat <= p90 <= upper, and not "
                                      "negative for a series that never was. Fails the plan when not."),
    ],
)
def demand_forecast(context: dg.AssetExecutionContext, config: ForecastConfig, database: DatabaseResource,
                    business_calendar: pd.DataFrame):
    """Quantile forecasts (p50 = yhat, p90, a 90 % interval) of one series, ``horizon_hours`` ahead
    at its step. Candidates - daily and business-day profiles, a leveled profile, the recent
    level, seasonal naive (day and week) and Prophet with the business calendar's holidays and
    events - are backtested from rolling origins; the best are combined by their errors."""
    from shaper_pipelines.lib.forecast import FAST, calendar_from_events, forecast
    from shaper_pipelines.lib.plots import overlay_plot_png, png_markdown

    target, metric = context.partition_key.split(":", 1)
    history = _history(database, target, metric, config.lookback_days, config.as_of)
    business, holidays = calendar_from_events(business_calendar)
    models = config.models or [*FAST, "prophet"]
    result = forecast(history, pd.Timedelta(hours=config.horizon_hours), models=models, business=business,
                      holidays=holidays, backtest_days=config.backtest_days)
    for note in result.notes:
        context.log.info(f"{target}/{metric}: {note}")
    frame = result.frame
    fallback = not result.beats_naive
    if fallback:
        naive = forecast(history, pd.Timedelta(hours=config.horizon_hours), models=["seasonal_naive_day"],
                         backtest_days=config.backtest_days)
        frame = naive.frame
        context.log.warning(f"{target}/{metric}: {result.model} lost to seasonal naive in its backtest "
                            f"(MAE ratio {result.mase:.2f}); publishing seasonal naive")

    recent = history.iloc[-3 * 288:]
    png = overlay_plot_png([(f"{target}/{metric}: last days and the forecast", [
        ("history", recent.index.as_unit("s").asi8, recent.to_numpy()),
        ("forecast p50", frame["timestamp"].dt.as_unit("s").astype("int64").to_numpy(), frame["yhat"].to_numpy()),
        ("p90", frame["timestamp"].dt.as_unit("s").astype("int64").to_numpy(), frame["p90"].to_numpy()),
        ("90 % interval top", frame["timestamp"].dt.as_unit("s").astype("int64").to_numpy(), frame["yhat_upper"].to_numpy()),
    ])])
    values = frame[["yhat", "yhat_lower", "yhat_upper", "p90"]].to_numpy()
    sane = bool(np.isfinite(values).all()
                and (frame["yhat_lower"] <= frame["yhat"] + 1e-9).all()
                and (frame["yhat"] <= frame["p90"] + 1e-9).all()
                and (frame["p90"] <= frame["yhat_upper"] + 1e-9).all()
                and (history.min() < 0 or (values >= 0).all()))
    model = "seasonal_naive_day" if fallback else result.model
    version = _version(model, history, config)
    forecast_id = None
    if sane:  # kept for forecast_accuracy to judge once its day has happened
        with database.forecast_store() as forecasts:
            forecast_id = forecasts.save(target, metric, frame, model=model, version=version,
                                         backtest_mase=result.mase, beats_naive=not fallback,
                                         produced_by=f"dagster run {context.run_id}")
    yield dg.Output(
        {"target": target, "metric": metric, "frame": frame, "model": model, "version": version,
         # After a fallback the published forecast is seasonal naive, whose ratio to itself is 1;
         # the candidate that lost is kept apart so no label pairs one model with another's score.
         "forecast_id": forecast_id, "mase": 1.0 if fallback else result.mase, "beats_naive": not fallback,
         "rejected": {"model": result.model, "mase": result.mase} if fallback else None,
         "step": float(history.index.to_series().diff().median().total_seconds())},
        metadata={
            "model": "seasonal_naive_day (fallback)" if fallback else result.model,
            "version": version,
            "forecast_id": dg.MetadataValue.int(forecast_id) if forecast_id is not None else "not stored (not sane)",
            "backtest_mae_vs_seasonal_naive": dg.MetadataValue.float(float(result.mase)),
            "backtest_mae": dg.MetadataValue.json({k: round(v, 6) for k, v in result.backtest_mae.items()}),
            "horizon_steps": dg.MetadataValue.int(len(frame)),
            "history_points": dg.MetadataValue.int(len(history)),
            "plot": dg.MetadataValue.md(png_markdown(png, f"forecast of {target}/{metric}")),
        },
    )
    yield dg.AssetCheckResult(
        check_name="beats_seasonal_naive", passed=not fallback, severity=dg.AssetCheckSeverity.WARN,
        description=(f"{result.model}: backtest MAE {result.mase:.3f}x seasonal naive's"),
        metadata={"mae_ratio": float(result.mase)})
    yield dg.AssetCheckResult(check_name="forecast_is_sane", passed=sane, severity=dg.AssetCheckSeverity.ERROR)


def _version(model: str, history: pd.Series, config: ForecastConfig) -> str:
    """What identifies a fitted forecast: the model, the history it saw and the code that fitted it."""
    import hashlib
    import json

    key = json.dumps({"model": model, "from": str(history.index[0]), "to": str(history.index[-1]),
                      "points": len(history), "sum": round(float(history.sum()), 6), "horizon": config.horizon_hours,
                      "code": FORECAST_CODE_VERSION}, sort_keys=True)
    return hashlib.sha256(key.encode()).hexdigest()[:16]


@dg.asset(group_name="forecast", kinds={"python", "scikitlearn"}, owners=["team:platform"],
          deps=[dg.AssetDep("simulation_results", partition_mapping=dg.AllPartitionMapping())],
          automation_condition=REFIT)
def capacity_model(context: dg.AssetExecutionContext, database: DatabaseResource) -> pd.DataFrame:
    """Load one instance serves at 100 % utilisation, per scaling target. Measured by HTTP
    rehearsals (network_io simulations: achieved against offered requests per second, an isotonic
    fit, its saturation point) where the target names none in scaling.yaml; otherwise the
    configured figure, and it says which."""
    from shaper_pipelines.lib.capacity import fit_capacity

    scaling = load_scaling()
    measured = None
    with database.simulation_store() as sims:
        runs = [r for r in sims.runs() if r["resource"] == "network_io" and r["status"] in ("finished", "stopped")]
        if runs:
            samples = pd.concat([sims.samples(r["run_key"]) for r in runs[-5:]], ignore_index=True)
            try:
                measured = fit_capacity(samples["target"].to_numpy(), samples["achieved"].to_numpy())
                context.log.info(f"HTTP rehearsals: {measured.describe()}")
            except ValueError as exc:
                context.log.warning(f"HTTP rehearsals could not be fitted: {exc}")
    rows = []
    for t in scaling.targets:
        if t.capacity_per_instance is not None:
            rows.append({"target": t.name, "capacity_per_instance": float(t.capacity_per_instance),
                         "source": "configured in scaling.yaml", "saturated": None})
        elif measured is not None:
            rows.append({"target": t.name, "capacity_per_instance": measured.capacity,
                         "source": f"HTTP rehearsals: {measured.describe()}", "saturated": measured.saturated})
        else:
            rows.append({"target": t.name, "capacity_per_instance": float("nan"),
                         "source": "none: no capacity configured and no HTTP rehearsal to measure it",
                         "saturated": None})
    frame = pd.DataFrame(rows)
    context.add_output_metadata({
        "capacity": dg.MetadataValue.md(frame.to_markdown(index=False) if hasattr(frame, "to_markdown") else str(frame)),
        "simulations_used": dg.MetadataValue.int(len(runs)),
    })
    return frame


class PlanConfig(dg.Config):
    lookback_days: int = 28
    horizon_hours: int = 48
    critical_utilization: float = 0.9  # forecast above this even at max capacity: a notice (critical_plan_notice)


@dg.asset(group_name="forecast", kinds={"python"}, owners=["team:platform"], automation_condition=REFIT)
def utilisation_forecast(context: dg.AssetExecutionContext, demand_forecast: dict,
                         capacity_model: pd.DataFrame) -> pd.DataFrame:
    """Predicted utilisation (p50 and p90) per scaling target if it stayed at its configured
    minimum capacity, and when that first crosses the target utilisation: how much the plan has
    to do."""
    scaling = load_scaling()
    capacity = capacity_model.set_index("target")["capacity_per_instance"]
    frames, summary = [], []
    for t in scaling.targets:
        key = f"{t.history.target}:{t.history.metric}"
        fc = demand_forecast.get(key)
        c = float(capacity.get(t.name, float("nan")))
        if fc is None or not np.isfinite(c):
            summary.append(f"| {t.name} | - | - | no {'forecast' if fc is None else 'capacity'} |")
            continue
        f = fc["frame"]
        at = t.min_capacity * c
        u = pd.DataFrame({"target": t.name, "timestamp": f["timestamp"], "utilization_p50": f["yhat"] / at,
                          "utilization_p90": f["p90"] / at, "capacity": t.min_capacity})
        frames.append(u)
        over = u[u["utilization_p90"] > t.target_utilization]
        when = f"{over['timestamp'].iloc[0]:%Y-%m-%d %H:%M}" if len(over) else "never"
        summary.append(f"| {t.name} | {u['utilization_p90'].max():.2f} | {when} | at {t.min_capacity} instance(s) |")
    table = "\n".join(["| target | peak p90 utilisation | first above target (UTC) | note |",
                       "|---|---:|---|---|", *summary])
    context.add_output_metadata({"summary": dg.MetadataValue.md(table)})
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(
        columns=["target", "timestamp", "utilization_p50", "utilization_p90", "capacity"])


@dg.asset(group_name="forecast", kinds={"python", "sql"}, owners=["team:platform"], deps=ALL_HISTORY,
          automation_condition=REFIT)
def scaling_plan(context: dg.AssetExecutionContext, config: PlanConfig, database: DatabaseResource,
                 demand_forecast: dict, capacity_model: pd.DataFrame, utilisation_forecast: pd.DataFrame,
                 business_calendar: pd.DataFrame) -> pd.DataFrame:
    """Per scaling target, the floor of warm instances to hold at each step of the next
    ``horizon_hours``, with the reason for each change, stored for apply_scaling_job. The floor is
    what the series' own replayed history shows beats reactive tracking at equal cost (floors from
    the week's profile or from the demand forecast - a forecast that lost to seasonal naive is not
    used). It never scales in: a falling floor only lets the target's reactive policy scale in."""
    from shaper_pipelines.lib.forecast import calendar_from_events
    from shaper_pipelines.lib.planning import PlanError, make_plan
    from shaper_pipelines.lib.plots import png_markdown

    scaling = load_scaling()
    capacity = capacity_model.set_index("target")["capacity_per_instance"]
    business, holidays = calendar_from_events(business_calendar)
    plans, sections, failures, critical = [], [], [], []
    for t in scaling.targets:
        key = f"{t.history.target}:{t.history.metric}"
        c = float(capacity.get(t.name, float("nan")))
        if not np.isfinite(c):
            failures.append(f"{t.name}: no capacity per instance (configure one or run an HTTP rehearsal)")
            continue
        fc = demand_forecast.get(key, {})
        # Critical: the p90 forecast would run the target above critical_utilization even with
        # every instance it may have - no plan can help, people must.
        if fc.get("frame") is not None:
            ceiling = fc["frame"]["p90"].to_numpy() / (t.max_capacity * c)
            if ceiling.max() > config.critical_utilization:
                i = int(ceiling.argmax())
                critical.append({"target": t.name, "utilization": float(ceiling[i]), "max_capacity": t.max_capacity,
                                 "at": f"{fc['frame']['timestamp'].iloc[i]:%Y-%m-%d %H:%M} UTC"})
        history = _history(database, t.history.target, t.history.metric, config.lookback_days)
        try:
            plan = make_plan(history, pd.Timedelta(hours=config.horizon_hours), capacity_per_instance=c,
                             target_utilization=t.target_utilization, warmup=pd.Timedelta(seconds=t.warmup),
                             min_capacity=t.min_capacity, max_capacity=t.max_capacity,
                             forecast_options={"business": business, "holidays": holidays},
                             use_forecast=bool(fc.get("beats_naive")), start=pd.Timestamp.now(tz="UTC"),
                             max_actions=t.max_actions)
        except PlanError as exc:
            failures.append(f"{t.name}: {exc}")
            continue
        if not fc.get("beats_naive"):
            plan.notes.append(f"the demand forecast of {key} did not beat seasonal naive (or is missing): "
                              "the floor comes from history alone")
        frame = plan.frame.copy()
        frame.insert(0, "target", t.name)
        model = (f"floor: {plan.rule.rule.name}; forecast: {fc.get('model', 'none')} "
                 f"(version {fc.get('version', '-')}, forecast_id {fc.get('forecast_id', '-')})")
        with database.scaling_store() as store:
            plan_id = store.save_plan(t.name, frame[["timestamp", "desired_capacity", "reason"]],
                                      produced_by=f"dagster run {context.run_id}", model=model)
        frame["plan_id"] = plan_id
        plans.append(frame)
        sections.append(_plan_section(t, plan, frame, plan_id, c, png_markdown))
    if failures and not plans:
        raise dg.Failure("no scaling plan could be made:\n" + "\n".join(failures))
    for f in failures:
        context.log.error(f)
    out = pd.concat(plans, ignore_index=True)
    context.add_output_metadata({
        "targets": dg.MetadataValue.int(len(plans)),
        "failed": dg.MetadataValue.json(failures),
        "critical": dg.MetadataValue.json(critical),
        "plan": dg.MetadataValue.md("\n\n".join(sections)),
    })
    return out


def _plan_section(t, plan, frame: pd.DataFrame, plan_id: int, capacity: float, png_markdown) -> str:
    """The plan of one target for the UI: why this floor, its changes with reasons, and a plot."""
    from shaper_pipelines.lib.plan_view import changes_markdown
    from shaper_pipelines.lib.plots import overlay_plot_png

    secs = frame["timestamp"].dt.as_unit("s").astype("int64").to_numpy()
    png = overlay_plot_png([(f"{t.name}: floor of warm instances (plan {plan_id})", [
        ("desired capacity", secs, frame["desired_capacity"].to_numpy(dtype=float)),
        (f"planned demand in instances at {t.target_utilization:g}", secs,
         frame["planned_demand"].to_numpy() / (capacity * t.target_utilization)),
    ])])
    return "\n".join([
        f"### {t.name} ({t.kind} {t.resource}), plan {plan_id}",
        f"- floor rule: **{plan.rule.rule.name}** - {plan.rule.why}",
        *[f"- {n}" for n in plan.notes],
        "",
        changes_markdown(frame),
        "",
        png_markdown(png, f"plan for {t.name}"),
    ])


forecast_job = dg.define_asset_job(
    "forecast_job", selection=dg.AssetSelection.assets(demand_forecast),
    description="Forecast one series (a partition); a backfill over all partitions forecasts the fleet, one run "
                "per series, in parallel as the run queue allows.")
plan_job = dg.define_asset_job(
    "plan_job", selection=dg.AssetSelection.assets(capacity_model, utilisation_forecast, scaling_plan),
    description="The capacity model, the utilisation forecast and the scaling plan of every scaling target.")
