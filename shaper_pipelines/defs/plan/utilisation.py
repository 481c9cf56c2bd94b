"""utilisation_forecast: what the demand forecasts mean for each scaling target's utilisation."""

import dagster as dg
import numpy as np
import pandas as pd

from shaper_pipelines.config import load_scaling
from shaper_pipelines.defs.automation import REPLAN

COLUMNS = ["target", "timestamp", "utilization_p50", "utilization_p90", "capacity", "demand_p50", "demand_p90"]


@dg.asset(group_name="plan", kinds={"python"}, owners=["team:platform"], automation_condition=REPLAN)
def utilisation_forecast(context: dg.AssetExecutionContext, demand_forecast: dict,
                         capacity_model: pd.DataFrame) -> pd.DataFrame:
    """Predicted utilisation (p50 and p90) per scaling target if it stayed at its configured
    minimum capacity (column ``capacity``), and when that first crosses the target utilisation:
    how much the plan has to do. A target whose service was rehearsed maps the demand per instance
    through the utilisation curve fitted on its rehearsals (capacity_model's ``response``: the
    service's own measured utilisation, which need not be a straight line); any other divides the
    demand by its capacity. ``demand_p50``/``demand_p90`` keep the demand, so prometheus_export
    can map it again at the floor scaling_plan holds at each step (capacity="planned", what the
    alerts watch); this one is exported as capacity="minimum"."""
    from shaper_pipelines.lib.response_model import ResponseModel

    scaling = load_scaling()
    models = capacity_model.set_index("target")
    frames, summary = [], []
    for t in scaling.targets:
        key = f"{t.history.target}:{t.history.metric}"
        fc = demand_forecast.get(key)
        row = models.loc[t.name] if t.name in models.index else None
        c = float(row["capacity_per_instance"]) if row is not None else float("nan")
        if fc is None or not np.isfinite(c):
            summary.append(f"| {t.name} | - | - | no {'forecast' if fc is None else 'capacity'} |")
            continue
        f = fc["frame"]
        response = row.get("response") if row is not None else None
        if isinstance(response, dict):
            model = ResponseModel.from_dict(response)
            p50 = model.utilisation_at(f["yhat"].to_numpy(dtype=float) / t.min_capacity)
            p90 = model.utilisation_at(f["p90"].to_numpy(dtype=float) / t.min_capacity)
            basis = f"utilisation curve of rehearsals {', '.join(row['rehearsals'])}"
        else:
            at = t.min_capacity * c
            p50, p90 = f["yhat"] / at, f["p90"] / at
            basis = "demand / capacity"
        u = pd.DataFrame({"target": t.name, "timestamp": f["timestamp"], "utilization_p50": p50,
                          "utilization_p90": p90, "capacity": t.min_capacity, "demand_p50": f["yhat"],
                          "demand_p90": f["p90"]})
        frames.append(u)
        over = u[u["utilization_p90"] > t.target_utilization]
        when = f"{over['timestamp'].iloc[0]:%Y-%m-%d %H:%M}" if len(over) else "never"
        summary.append(f"| {t.name} | {u['utilization_p90'].max():.2f} | {when} | at {t.min_capacity} instance(s); "
                       f"{basis} |")
    table = "\n".join(["| target | peak p90 utilisation | first above target (UTC) | note |",
                       "|---|---:|---|---|", *summary])
    context.add_output_metadata({"summary": dg.MetadataValue.md(table)})
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=COLUMNS)
