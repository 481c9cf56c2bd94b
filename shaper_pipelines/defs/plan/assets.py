"""scaling_plan: per scaling target, the floor of warm instances to hold, stored for
apply_scaling_job; and plan_job, which makes it with the capacity model and the utilisation
forecast."""

import dagster as dg
import numpy as np
import pandas as pd

from shaper_pipelines.config import load_scaling
from shaper_pipelines.defs.automation import REPLAN
from shaper_pipelines.defs.forecast.assets import ALL_HISTORY, history_window
from shaper_pipelines.defs.plan.capacity import capacity_model
from shaper_pipelines.defs.plan.utilisation import utilisation_forecast
from shaper_pipelines.lib import clock
from shaper_pipelines.resources.database import DatabaseResource


class PlanConfig(dg.Config):
    lookback_days: int = 28
    horizon_hours: int = 48
    critical_utilization: float = 0.9  # forecast above this even at max capacity: a notice (critical_plan_notice)


@dg.asset(group_name="plan", kinds={"python", "sql"}, owners=["team:platform"], deps=ALL_HISTORY,
          automation_condition=REPLAN)
def scaling_plan(context: dg.AssetExecutionContext, config: PlanConfig, database: DatabaseResource,
                 demand_forecast: dict, capacity_model: pd.DataFrame, utilisation_forecast: pd.DataFrame,
                 business_calendar: pd.DataFrame) -> pd.DataFrame:
    """Per scaling target, the floor of warm instances to hold at each step of the next
    ``horizon_hours``, with the reason for each change, stored for apply_scaling_job. The floor is
    what the series' own replayed history shows beats reactive tracking at equal cost (floors from
    the week's profile or from the demand forecast - a forecast that lost to seasonal naive is not
    used). It never scales in: a falling floor only lets the target's reactive policy scale in.
    The forecast in the plan is demand_forecast's output, as published; each plan records its
    version. History is read only to backtest floor rules at past origins."""
    from shaper_pipelines.lib.day_kinds import from_events
    from shaper_pipelines.lib.planning import PlanError, make_plan
    from shaper_pipelines.lib.plots import png_markdown

    scaling = load_scaling()
    capacity = capacity_model.set_index("target")["capacity_per_instance"]
    source_of = dict(zip(capacity_model["target"], capacity_model["source"])) if "source" in capacity_model else {}
    objective_of = ({r.target: r.objective for r in capacity_model.itertuples(index=False) if r.bound in ("objective", "upper")}
                    if "bound" in capacity_model.columns else {})
    calendar = from_events(business_calendar)
    plans, sections, failures, critical = [], [], [], []
    for t in scaling.targets:
        key = f"{t.history.target}:{t.history.metric}"
        c = float(capacity.get(t.name, float("nan")))
        if not np.isfinite(c):
            failures.append(f"{t.name}: no capacity per instance (configure one or run an HTTP rehearsal)")
            continue
        fc = demand_forecast.get(key, {})
        if fc.get("frame") is not None:
            found = critical_at_maximum(t.name, fc["frame"], t.max_capacity, c, config.critical_utilization)
            if found and objective_of.get(t.name):
                # The capacity is the load at which the latency objective broke: the notice says so.
                found["objective"] = objective_of[t.name]
            if found:
                critical.append(found)
        history = history_window(database, t.history.target, t.history.metric, config.lookback_days)
        # The forecast demand_forecast made and judged; the plan does not fit its own.
        published = fc["frame"].set_index("timestamp")["p90"] if fc.get("frame") is not None else None
        try:
            # Unbounded above, then capped at the maximum below: a target whose demand needs more
            # than its maximum still gets a plan (every instance it may have, warm in time), and
            # the export shows the utilisation that plan leaves it at, above 1.
            plan = make_plan(history, pd.Timedelta(hours=config.horizon_hours), capacity_per_instance=c,
                             target_utilization=t.target_utilization, warmup=pd.Timedelta(seconds=t.warmup),
                             min_capacity=t.min_capacity, max_capacity=None,
                             forecast_options={"calendar": calendar},
                             use_forecast=bool(fc.get("beats_naive")), start=clock.now(),
                             max_actions=t.max_actions, published=published,
                             served=fc.get("served") if published is not None else None)
        except PlanError as exc:
            failures.append(f"{t.name}: {exc}")
            continue
        cap_at_maximum(plan, t.max_capacity)
        if not fc.get("beats_naive"):
            plan.notes.append(f"the demand forecast of {key} did not beat seasonal naive (or is missing): "
                              "the floor comes from history alone")
        frame = plan.frame.copy()
        frame.insert(0, "target", t.name)
        model = (f"floor: {plan.rule.rule.name}; forecast: {fc.get('model', 'none')} "
                 f"(version {fc.get('version', '-')}, forecast_id {fc.get('forecast_id', '-')})")
        with database.scaling_store() as store:
            plan_id = store.save_plan(t.name, frame[["timestamp", "desired_capacity", "reason"]],
                                      produced_by=f"dagster run {context.run.run_id}", model=model)
        frame["plan_id"] = plan_id
        plans.append(frame)
        sections.append(_plan_section(t, plan, frame, plan_id, c, png_markdown, source_of.get(t.name, "")))
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


def critical_at_maximum(target: str, forecast: pd.DataFrame, max_capacity: int, capacity_per_instance: float,
                        critical_utilization: float) -> dict | None:
    """Critical: the p90 forecast (columns timestamp, p90) would run the target above
    ``critical_utilization`` even with every instance it may have - no plan can help, people must.
    The worst step as critical_plan_notice posts it, or None. A forecast far above the minimum that
    the maximum still serves is not critical: the plan raises the floor."""
    ceiling = forecast["p90"].to_numpy(dtype=float) / (max_capacity * capacity_per_instance)
    if not len(ceiling) or not ceiling.max() > critical_utilization:
        return None
    i = int(ceiling.argmax())
    return {"target": target, "utilization": float(ceiling[i]), "max_capacity": max_capacity,
            "at": f"{forecast['timestamp'].iloc[i]:%Y-%m-%d %H:%M} UTC"}


def cap_at_maximum(plan, max_capacity: int) -> None:
    """Hold ``plan``'s floor at ``max_capacity`` wherever it wanted more, saying so in the reason
    of each capped step and in the plan's notes."""
    frame = plan.frame
    over = frame["desired_capacity"] > max_capacity
    if not over.any():
        return
    wanted = int(frame.loc[over, "desired_capacity"].max())
    frame.loc[over, "reason"] = [f"capped at the maximum {max_capacity} (wanted {int(w)}): {r}"
                                 for w, r in zip(frame.loc[over, "desired_capacity"], frame.loc[over, "reason"])]
    frame.loc[over, "desired_capacity"] = max_capacity
    first = frame.loc[over, "timestamp"].iloc[0]
    plan.notes.append(f"the plan wants up to {wanted} instances (first at {first:%Y-%m-%d %H:%M} UTC), above the "
                      f"maximum {max_capacity}: held at the maximum for {int(over.sum())} step(s); raise "
                      "max_capacity or the capacity per instance")


def _plan_section(t, plan, frame: pd.DataFrame, plan_id: int, capacity: float, png_markdown,
                  source: str = "") -> str:
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
        f"- capacity per instance: {capacity:.4g}" + (f" ({source})" if source else ""),
        *[f"- {n}" for n in plan.notes],
        "",
        changes_markdown(frame),
        "",
        png_markdown(png, f"plan for {t.name}"),
    ])


plan_job = dg.define_asset_job(
    "plan_job", selection=dg.AssetSelection.assets(capacity_model, utilisation_forecast, scaling_plan),
    description="The capacity model, the utilisation forecast and the scaling plan of every scaling target.")
