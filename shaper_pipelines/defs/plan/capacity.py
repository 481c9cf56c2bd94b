"""capacity_model: what one instance of each scaling target serves."""

import dagster as dg
import pandas as pd

from shaper_pipelines.config import load_scaling
from shaper_pipelines.defs.automation import REMEASURE
from shaper_pipelines.resources.database import DatabaseResource

COLUMNS = ["target", "capacity_per_instance", "source", "saturated", "bound", "objective", "rehearsals", "stale",
           "response"]


@dg.asset(group_name="plan", kinds={"python", "scikitlearn"}, owners=["team:platform"],
          deps=[dg.AssetDep("simulation_results", partition_mapping=dg.AllPartitionMapping())],
          automation_condition=REMEASURE)
def capacity_model(context: dg.AssetExecutionContext, database: DatabaseResource) -> pd.DataFrame:
    """Load one instance serves, per scaling target, and how its service responds to load.

    - ``capacity_per_instance`` pinned in scaling.yaml wins, and says so.
    - A target with a ``rehearsal:`` section: its own capacity rehearsals (the service's
      utilisation and latency, second by second, in simulation_results) fitted by
      ``lib.response_model``: the load per instance at which the latency objective is first
      broken is the capacity (``bound`` "objective"), or, when no rehearsal broke it, the most it
      was offered (``bound`` "lower", a lower bound). ``response`` carries the fitted utilisation
      curve that utilisation_forecast maps demand through, and ``stale`` why the rehearsals used
      are stale (too old, another service version) when no fresh one exists.
    - Otherwise: HTTP rehearsals' throughput ceiling (achieved against offered, isotonic), as before.
    """
    from shaper_pipelines.lib.capacity import fit_capacity
    from shaper_pipelines.lib.clock import now as clock_now
    from shaper_pipelines.lib.rehearsal_capacity import target_capacity

    scaling = load_scaling()
    measured, throughput_runs, plots = None, [], []
    with database.simulation_store() as sims:
        runs = sims.runs()
        throughput_runs = [r for r in runs if r["resource"] == "network_io" and not r.get("scaling_target")
                           and r["status"] in ("finished", "stopped")]
        if throughput_runs:
            samples = pd.concat([sims.samples(r["run_key"]) for r in throughput_runs[-5:]], ignore_index=True)
            try:
                measured = fit_capacity(samples["target"].to_numpy(), samples["achieved"].to_numpy())
                context.log.info(f"HTTP rehearsals: {measured.describe()}")
            except ValueError as exc:
                context.log.warning(f"HTTP rehearsals could not be fitted: {exc}")
        rows = []
        for t in scaling.targets:
            row = {"target": t.name, "saturated": None, "bound": None, "objective": None, "rehearsals": [],
                   "stale": None, "response": None}
            fitted = None
            if t.rehearsal is not None:
                fitted = target_capacity(t.rehearsal, [r for r in runs if r.get("scaling_target") == t.name],
                                         sims.samples, clock_now())
                row["objective"] = t.rehearsal.objective.describe()
                row["rehearsals"], row["stale"] = fitted.runs, fitted.stale
                if fitted.model is not None:
                    m = fitted.model
                    row.update(bound=m.bound, response=m.to_dict(),
                               saturated=bool(m.saturated))
                    plots.append((t.name, {"points": fitted.points, "curve": m.curve,
                                           "objective_ms": t.rehearsal.objective.latency * 1000,
                                           "capacity": m.capacity}))
                    if fitted.stale:
                        context.log.warning(f"{t.name}: capacity from stale rehearsals: {fitted.stale}")
            if t.capacity_per_instance is not None:
                row.update(capacity_per_instance=float(t.capacity_per_instance), source="configured in scaling.yaml",
                           bound="configured")
            elif fitted is not None:
                row.update(capacity_per_instance=fitted.model.capacity if fitted.model else float("nan"),
                           source=fitted.source())
            elif measured is not None:
                row.update(capacity_per_instance=measured.capacity, source=f"HTTP rehearsals: {measured.describe()}",
                           saturated=measured.saturated, bound="saturation")
            else:
                row.update(capacity_per_instance=float("nan"),
                           source="none: no capacity configured and no HTTP rehearsal to measure it")
            rows.append(row)
    frame = pd.DataFrame(rows, columns=COLUMNS)
    shown = frame[["target", "capacity_per_instance", "bound", "objective", "source", "stale"]].fillna("-")
    metadata = {"capacity": dg.MetadataValue.md(shown.to_markdown(index=False)),
                "simulations_used": dg.MetadataValue.int(len(throughput_runs) + sum(len(r) for r in frame["rehearsals"]))}
    if plots:
        from shaper_pipelines.lib.plots import png_markdown, response_plot_png

        metadata["response"] = dg.MetadataValue.md(png_markdown(response_plot_png(plots), "response to load"))
    context.add_output_metadata(metadata)
    return frame
