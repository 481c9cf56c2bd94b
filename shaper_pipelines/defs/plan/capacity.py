"""capacity_model: what one instance of each scaling target serves."""

import dagster as dg
import pandas as pd

from shaper_pipelines.config import load_scaling
from shaper_pipelines.defs.automation import REMEASURE
from shaper_pipelines.resources.database import DatabaseResource


@dg.asset(group_name="plan", kinds={"python", "scikitlearn"}, owners=["team:platform"],
          deps=[dg.AssetDep("simulation_results", partition_mapping=dg.AllPartitionMapping())],
          automation_condition=REMEASURE)
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


