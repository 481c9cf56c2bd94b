"""The shaper code location: every definition is discovered from ``defs/``, none listed here."""

from pathlib import Path

import dagster as dg

# Imported here, not first by load_from_defs_folder, whose imports run inside Dagster's
# warnings.catch_warnings(): the package's warning filters would be dropped as that returns.
import shaper_pipelines.defs  # noqa: F401


@dg.definitions
def defs() -> dg.Definitions:
    return dg.load_from_defs_folder(path_within_project=Path(__file__).parent)
