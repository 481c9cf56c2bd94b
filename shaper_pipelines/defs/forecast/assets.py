"""Demand forecasts: one partition per history series ("target:metric").

Forecasting a fleet is a backfill that fans out one run per series (in parallel under the run
queue, or one pod each with dagster-k8s). What the forecasts mean for capacity - the capacity
model, the utilisation forecast and the plan - lives in ``defs/plan``.
"""

import dagster as dg
import numpy as np
import pandas as pd

from shaper_pipelines.defs.automation import REFIT
from shaper_pipelines.defs.history.assets import CONFIG as METRICS, history_key
from shaper_pipelines.lib import clock
from shaper_pipelines.resources.database import DatabaseResource

SERIES = [f"{t}:{m}" for t, m in METRICS.series()]
series_partitions = dg.StaticPartitionsDefinition(SERIES)
ALL_HISTORY = [dg.AssetDep(history_key(t, m), partition_mapping=dg.AllPartitionMapping())
               for t, m in METRICS.series()]


class ForecastConfig(dg.Config):
    lookback_days: int = 28  # history each forecast is fitted and backtested on
    horizon_hours: int = 48
    models: list[str] = []  # empty: SHAPER_FORECAST_MODELS, else the fast candidates and Prophet
    backtest_days: int = 4
    # A UTC date: forecast from the history before it, as if it were issued then (to judge the
    # forecasting on days that have already happened). Empty: now.
    as_of: str = ""


def history_window(database: DatabaseResource, target: str, metric: str, days: int, as_of: str = "") -> pd.Series:
    """The stored series over the ``days`` whole days before ``as_of`` (a UTC date; default: up to
    now), gaps interpolated."""
    today = pd.Timestamp(as_of, tz="UTC").floor("D") - pd.Timedelta(days=1) if as_of else \
        clock.now().floor("D")
    with database.metric_store() as store:
        frame = store.read(target, metric, today - pd.Timedelta(days=days), today + pd.Timedelta(days=1))
    if len(frame) < 2:
        raise dg.Failure(f"{target}/{metric}: no stored history in the last {days} days; materialise "
                         f"historical_metrics for it first")
    return frame["value"].interpolate(limit_direction="both")


def served_table(served: list[dict], fallback: bool) -> str:
    """Which model served each calendar day and event of the horizon, and why, as a table."""
    if fallback:
        return "seasonal naive serves every day: the forecast lost to it in its backtest"
    if not served:
        return "no holiday, day around one, or business event in the horizon: today's model serves every day"
    rows = ["| day or event | kind | served by | why |", "|---|---|---|---|"]
    for r in served:
        what = r.get("event") or f"{r['date']} {r['holiday']}".strip()
        model = f"x{r['factor']:g} on today's model" if "event" in r else r["model"]
        rows.append(f"| {what} | {r['kind']} | {model} | {r['why']} |")
    return "\n".join(rows)


STALE_AFTER = pd.Timedelta(days=7)
FORECAST_CODE_VERSION = "2"  # bump when the forecasting logic changes: it is part of each forecast's version


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
    level, seasonal naive (day and week), Holt-Winters, like days and Prophet with the business
    calendar's holidays and events - are backtested from rolling origins; the best are combined
    by their errors. Holidays, the days around them and events are each served by what did best
    on their past occurrences (lib.day_choice); the calendar_days table says which and why."""
    from shaper_pipelines.lib.day_kinds import from_events
    from shaper_pipelines.lib.forecast import forecast
    from shaper_pipelines.lib.plots import overlay_plot_png, png_markdown

    target, metric = context.partition_key.split(":", 1)
    history = history_window(database, target, metric, config.lookback_days, config.as_of)
    calendar = from_events(business_calendar)
    models = config.models or default_models()
    horizon = _horizon(history, config)
    result = forecast(history, horizon, models=models, calendar=calendar, backtest_days=config.backtest_days)
    for note in result.notes:
        context.log.info(f"{target}/{metric}: {note}")
    frame = result.frame
    fallback = not result.beats_naive
    if fallback:
        naive = forecast(history, horizon, models=["seasonal_naive_day"],
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
                                         produced_by=f"dagster run {context.run.run_id}")
    yield dg.Output(
        {"target": target, "metric": metric, "frame": frame, "model": model, "version": version,
         # After a fallback the published forecast is seasonal naive, whose ratio to itself is 1;
         # the candidate that lost is kept apart so no label pairs one model with another's score.
         "forecast_id": forecast_id, "mase": 1.0 if fallback else result.mase, "beats_naive": not fallback,
         "rejected": {"model": result.model, "mase": result.mase} if fallback else None,
         "step": float(history.index.to_series().diff().median().total_seconds()),
         # which model served each calendar day and event of the horizon (none after a fallback)
         "served": [] if fallback else result.served},
        metadata={
            "model": "seasonal_naive_day (fallback)" if fallback else result.model,
            "version": version,
            "forecast_id": dg.MetadataValue.int(forecast_id) if forecast_id is not None else "not stored (not sane)",
            "backtest_mae_vs_seasonal_naive": dg.MetadataValue.float(float(result.mase)),
            "backtest_mae": dg.MetadataValue.json({k: round(v, 6) for k, v in result.backtest_mae.items()}),
            "calendar_days": dg.MetadataValue.md(served_table(result.served, fallback)),
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


def default_models() -> list[str]:
    """The candidates a forecast tries when its config names none: SHAPER_FORECAST_MODELS, else
    the fast ones and Prophet."""
    from shaper_pipelines.lib.forecast import FAST
    from shaper_pipelines.settings import get_settings

    return list(get_settings().forecast_models) or [*FAST, "prophet"]


def _horizon(history: pd.Series, config: ForecastConfig) -> pd.Timedelta:
    """``horizon_hours`` after now (after ``as_of``'s midnight for a forecast of the past): history
    lands once a day, so the forecast also spans the hours between the last sample and now, and
    a plan made now for its full horizon finds the forecast it needs."""
    step = history.index[-1] - history.index[-2]
    end = history.index[-1] + step
    horizon = pd.Timedelta(hours=config.horizon_hours)
    if config.as_of or clock.now() - end > STALE_AFTER:
        return horizon  # history this old is a problem the plan reports; no week-long forecast for it
    wanted = clock.now() + horizon - end
    return max(horizon, -(-wanted // step) * step)  # whole steps, rounded up: it reaches now + horizon


def _version(model: str, history: pd.Series, config: ForecastConfig) -> str:
    """What identifies a fitted forecast: the model, the history it saw and the code that fitted it."""
    import hashlib
    import json

    key = json.dumps({"model": model, "from": str(history.index[0]), "to": str(history.index[-1]),
                      "points": len(history), "sum": round(float(history.sum()), 6), "horizon": config.horizon_hours,
                      "code": FORECAST_CODE_VERSION}, sort_keys=True)
    return hashlib.sha256(key.encode()).hexdigest()[:16]


forecast_job = dg.define_asset_job(
    "forecast_job", selection=dg.AssetSelection.assets(demand_forecast),
    description="Forecast one series (a partition); a backfill over all partitions forecasts the fleet, one run "
                "per series, in parallel as the run queue allows.")
