"""The history configuration: which targets and metrics, the PromQL for each, quality limits."""

from __future__ import annotations

import re
from pathlib import Path

import pandas as pd
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from shaper_pipelines.lib.durations import parse_duration
from shaper_pipelines.lib.quality import QualityRules

_NAME = r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}$"


class MetricQuery(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    query: str = Field(min_length=1)
    bounds: tuple[float, float] = (0.0, float("inf"))

    def promql(self, target: str) -> str:
        # Targets are restricted to a safe alphabet, but escape anyway: this lands inside "...".
        return self.query.replace("$target", target.replace("\\", "\\\\").replace('"', '\\"'))


class QualityConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    max_gap_share: float = Field(default=0.1, ge=0, le=1)
    max_flat_steps: int = Field(default=36, ge=2)


class MetricsConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    start_date: str
    step: float = 300.0
    quality: QualityConfig = QualityConfig()
    metrics: dict[str, MetricQuery]
    targets: dict[str, list[str]]

    @field_validator("step", mode="before")
    @classmethod
    def _step(cls, value):
        return parse_duration(value)

    @field_validator("start_date")
    @classmethod
    def _date(cls, value):
        pd.Timestamp(value)
        return value

    @model_validator(mode="after")
    def _known(self):
        for target, metrics in self.targets.items():
            if not re.match(_NAME, target):
                raise ValueError(f"target {target!r} must match {_NAME}")
            for metric in metrics:
                if metric not in self.metrics:
                    raise ValueError(f"target {target} names metric {metric!r}, which has no query under metrics:")
        return self

    def series(self) -> list[tuple[str, str]]:
        return [(t, m) for t, ms in self.targets.items() for m in ms]

    def rules(self, metric: str) -> QualityRules:
        low, high = self.metrics[metric].bounds
        return QualityRules(lower=low, upper=high, max_gap_share=self.quality.max_gap_share,
                            max_flat_steps=self.quality.max_flat_steps)


def load_metrics_config(path: str | Path) -> MetricsConfig:
    try:
        return MetricsConfig.model_validate(yaml.safe_load(Path(path).read_text()))
    except (ValidationError, yaml.YAMLError, OSError) as exc:
        raise ValueError(f"{path}: {exc}") from None
