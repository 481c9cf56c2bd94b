"""utilisation_forecast: what the demand forecasts mean for each scaling target's utilisation."""

import dagster as dg
import numpy as np
import pandas as pd

from shaper_pipelines.config import load_scaling
from shaper_pipelines.defs.automation import REPLAN


@dg.asset(group_name="plan", kinds={"python"}, owners=["team:platform"], automation_condition=REPLAN)
def utilisation_forecast(context: dg.AssetExecutionContext, demand_forecast: dict,
                         capacity_model: pd.DataFrame) -> pd.DataFrame:
    """Predicted utilisation (p50 and p90) per scaling target if it stayed at its configured
    minimum capacity (column ``capacity``), and when that first crosses the target utilisation:
    how much the plan has to do. It is not what will be serving: prometheus_export rescales it to
    the floor scaling_plan holds at each step (capacity="planned"), which is what the alerts
    watch, and exports this one as capacity="minimum"."""
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


