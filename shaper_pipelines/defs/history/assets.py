"""Historical metrics: one asset per target and metric, partitioned by UTC day.

A backfill over any range of days runs as a single run (one query per day and series, one
transaction for everything), so a 14-day backfill of every series is one click and one run. Each
series carries blocking Great Expectations checks: a window that fails them is stored, for people
to look at, but nothing downstream (the forecasts) runs on it.
"""

from pathlib import Path

import dagster as dg
import numpy as np
import pandas as pd

from shaper_pipelines.lib.metrics_config import MetricsConfig, load_metrics_config
from shaper_pipelines.lib.quality import CHECKS
from shaper_pipelines.resources.database import DatabaseResource
from shaper_pipelines.resources.metrics_source import MetricsSourceResource


def metrics_config_path() -> Path:
    from shaper_pipelines.settings import get_settings, project_root

    return get_settings().metrics_config or project_root() / "profiles_data" / "metrics.yaml"


def history_key(target: str, metric: str) -> dg.AssetKey:
    return dg.AssetKey(["historical_metrics", target, metric])


def build_history_assets(cfg: MetricsConfig) -> dg.AssetsDefinition:
    partitions = dg.DailyPartitionsDefinition(start_date=cfg.start_date, timezone="UTC")
    specs = [
        dg.AssetSpec(
            history_key(target, metric),
            group_name="history",
            kinds={"prometheus", "python"},
            owners=["team:platform"],
            partitions_def=partitions,
            description=f"{metric} of {target} at a {cfg.step:g}s step, one UTC day per partition.",
            metadata={"target": target, "metric": metric, "query": cfg.metrics[metric].query},
        )
        for target, metric in cfg.series()
    ]
    check_specs = [
        dg.AssetCheckSpec(name, asset=history_key(target, metric), blocking=True, description=text)
        for target, metric in cfg.series()
        for name, text in CHECKS.items()
    ]

    @dg.multi_asset(
        name="historical_metrics",
        specs=specs,
        check_specs=check_specs,
        can_subset=True,
        backfill_policy=dg.BackfillPolicy.single_run(),
    )
    def historical_metrics(context: dg.AssetExecutionContext, metrics_source: MetricsSourceResource,
                           database: DatabaseResource):
        from shaper_pipelines.lib.quality import check_window
        from shaper_pipelines.store.metric_store import Window

        window = context.partition_time_window
        start, end = pd.Timestamp(window.start).tz_convert("UTC"), pd.Timestamp(window.end).tz_convert("UTC")
        step = pd.Timedelta(seconds=cfg.step)
        context.log.info(f"history {start:%Y-%m-%d} .. {end:%Y-%m-%d} from {metrics_source.kind} "
                         f"for {len(context.selected_asset_keys)} series")
        # Fetch everything first: if any fetch fails, the run fails before anything is written.
        fetched = []
        for key in sorted(context.selected_asset_keys, key=lambda k: k.path):
            _, target, metric = key.path
            raw = metrics_source.fetch(cfg.metrics[metric].promql(target), target, metric, start, end, step,
                                       log=context.log)
            fetched.append((key, target, metric, raw))

        windows, results = [], []
        for key, target, metric, raw in fetched:
            grid = pd.date_range(start, end, freq=step, inclusive="left")
            outcomes = check_window(raw, start, end, step, cfg.rules(metric))
            on_grid, filled = _fill_to_grid(raw, grid, step)
            windows.append(Window(target, metric, start, end, on_grid, filled, metrics_source.kind))
            results.append((key, target, metric, raw, on_grid, filled, outcomes))
        with database.metric_store() as store:
            rows = store.replace_windows(windows)
        context.log.info(f"stored {rows:,} samples")

        for key, target, metric, raw, on_grid, filled, outcomes in results:
            yield dg.MaterializeResult(
                asset_key=key,
                metadata={
                    "rows": dg.MetadataValue.int(int(np.isfinite(on_grid.to_numpy()).sum())),
                    "raw_samples": dg.MetadataValue.int(len(raw)),
                    "gaps_filled": dg.MetadataValue.int(int(filled.sum())),
                    "source": metrics_source.kind,
                    "window": f"{start:%Y-%m-%d} .. {end - pd.Timedelta(seconds=1):%Y-%m-%d}",
                    "plot": dg.MetadataValue.md(_plot(target, metric, on_grid, filled)),
                },
            )
            for outcome in outcomes:
                yield dg.AssetCheckResult(
                    asset_key=key, check_name=outcome.name, passed=outcome.passed,
                    severity=dg.AssetCheckSeverity.ERROR, description=outcome.description,
                    metadata={k: v for k, v in outcome.metadata.items() if v is not None},
                )

    return historical_metrics


def _fill_to_grid(raw: pd.Series, grid: pd.DatetimeIndex, step: pd.Timedelta) -> tuple[pd.Series, np.ndarray]:
    """The window on its regular grid, short gaps interpolated (see lib.history.regularise)."""
    from shaper_pipelines.lib.history import regularise

    finite = raw[np.isfinite(raw.to_numpy(dtype=np.float64))]
    if len(finite) < 2:
        return pd.Series(np.nan, index=grid, name="value"), np.zeros(len(grid), dtype=bool)
    regular, _ = regularise(finite, step.total_seconds())
    observed = finite.resample(step, origin="epoch").mean().reindex(grid)
    on_grid = regular.reindex(grid)
    filled = (observed.isna() & on_grid.notna()).to_numpy()
    return on_grid, filled


def _plot(target: str, metric: str, series: pd.Series, filled: np.ndarray) -> str:
    from shaper_pipelines.lib.plots import png_markdown, profile_plot_png

    ts = series.index.as_unit("s").asi8.astype(np.float64)
    png = profile_plot_png([(f"{target} {metric} ({int(filled.sum())} points filled)", ts,
                             series.to_numpy(dtype=np.float64), metric)])
    return png_markdown(png, f"{target} {metric}")


CONFIG = load_metrics_config(metrics_config_path())
historical_metrics = build_history_assets(CONFIG)

history_job = dg.define_asset_job(
    "history_job",
    selection=dg.AssetSelection.assets(historical_metrics),
    description="Materialise historical metrics for a day (or, as a backfill, a range of days).",
)

# Every morning, yesterday's complete UTC day.
# On by default: it only reads the metrics source. Everything downstream follows by automation.
history_schedule = dg.build_schedule_from_partitioned_job(
    history_job, hour_of_day=6, minute_of_hour=15, default_status=dg.DefaultScheduleStatus.RUNNING,
    description="Every morning at 06:15 UTC, yesterday's complete UTC day of every series. On by default: it only "
                "reads; the forecasts, the accuracy of the day, the plan and the export follow by automation.")
