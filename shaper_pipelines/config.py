"""The scaling configuration (profiles_data/scaling.yaml, or SHAPER_SCALING_CONFIG): which AWS
targets shaper plans for, inside which bounds. Read by planning, applying, exporting and the API."""

from __future__ import annotations

from pathlib import Path


def scaling_config_path() -> Path:
    from shaper_pipelines.settings import get_settings, project_root

    return get_settings().scaling_config or project_root() / "profiles_data" / "scaling.yaml"


def load_scaling():
    """The validated scaling targets, each tied to a series of the metrics configuration."""
    from shaper_pipelines.defs.history.assets import CONFIG as METRICS
    from shaper_pipelines.lib.scaling_config import load_scaling_config

    return load_scaling_config(scaling_config_path(), METRICS)
