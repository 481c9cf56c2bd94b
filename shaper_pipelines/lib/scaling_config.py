"""The scaling configuration (``profiles_data/scaling.yaml``): which AWS groups and services shaper
may scale, which history series drives each, and the bounds it must stay inside."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from shaper_pipelines.lib.action_budget import DEFAULT_MAX_ACTIONS
from shaper_pipelines.lib.durations import Duration
from shaper_pipelines.lib.metrics_config import MetricsConfig
from shaper_pipelines.lib.rehearsal_config import Rehearsal

_NAME = r"^[a-z0-9][a-z0-9._-]{0,99}$"
# Application Auto Scaling's ResourceId for an ECS service.
_ECS_RESOURCE = re.compile(r"^service/[A-Za-z0-9_-]{1,255}/[A-Za-z0-9_-]{1,255}$")
# An Auto Scaling group name: 1..255 printable characters (AWS's own limit); no slashes so that it
# cannot be mistaken for an ARN or an ECS resource.
_ASG_RESOURCE = re.compile(r"^[\x21-\x2e\x30-\x7e][\x20-\x2e\x30-\x7e]{0,254}$")
_REGION = re.compile(r"^[a-z]{2}(-[a-z]+)+-\d{1,2}$")

# AWS's hard quotas on scheduled actions, the owner's own included: 125 per Auto Scaling group
# (EC2 Auto Scaling quotas page), 200 per Application Auto Scaling scalable target (Application
# Auto Scaling quotas page). Neither can be raised, and moto enforces neither, so shaper counts.
SCHEDULED_ACTION_QUOTA = {"asg": 125, "ecs": 200}


class HistorySeries(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    target: str = Field(min_length=1)
    metric: str = Field(min_length=1)


class ScalingTarget(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    name: str = Field(pattern=_NAME)
    kind: Literal["asg", "ecs"]
    resource: str
    region: str = "us-east-1"
    history: HistorySeries
    # Load one instance serves at 100% utilisation; None leaves it to the capacity model.
    capacity_per_instance: float | None = Field(default=None, gt=0, allow_inf_nan=False)
    target_utilization: float = Field(default=0.7, gt=0, le=1)
    warmup: Duration = 300.0
    min_capacity: int = Field(ge=1)
    max_capacity: int = Field(ge=1)
    # The most scheduled actions shaper may hold on the target per 48 hours of plan: the budget
    # planning keeps to. At most the AWS quota of the kind (SCHEDULED_ACTION_QUOTA).
    max_actions: int = Field(default=DEFAULT_MAX_ACTIONS, ge=1)
    # How the service is rehearsed and its latency objective: the capacity model's source.
    rehearsal: Rehearsal | None = None

    @field_validator("region")
    @classmethod
    def _region(cls, value: str) -> str:
        if not _REGION.match(value):
            raise ValueError(f"{value!r} is not an AWS region name such as us-east-1")
        return value

    @model_validator(mode="after")
    def _consistent(self):
        if self.kind == "ecs" and not _ECS_RESOURCE.match(self.resource):
            raise ValueError(f"resource {self.resource!r}: an ecs target's resource is "
                             "service/<cluster>/<service> (Application Auto Scaling's ResourceId)")
        if self.kind == "asg" and not _ASG_RESOURCE.match(self.resource):
            raise ValueError(f"resource {self.resource!r}: an asg target's resource is the Auto Scaling "
                             "group's name (1 to 255 characters, no '/')")
        if self.min_capacity > self.max_capacity:
            raise ValueError(f"min_capacity {self.min_capacity} is above max_capacity {self.max_capacity}")
        quota = SCHEDULED_ACTION_QUOTA[self.kind]
        if self.max_actions > quota:
            holder = "Auto Scaling group" if self.kind == "asg" else "Application Auto Scaling scalable target"
            raise ValueError(f"max_actions {self.max_actions} is above AWS's hard quota of {quota} scheduled "
                             f"actions per {holder}, which the owner's own actions count against too; set "
                             f"max_actions to at most {quota} (the default {DEFAULT_MAX_ACTIONS} leaves room "
                             "for the owner's)")
        return self


class ScalingConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    targets: list[ScalingTarget] = Field(min_length=1)

    @model_validator(mode="after")
    def _unique(self):
        seen_names: set[str] = set()
        seen_resources: dict[tuple[str, str, str], str] = {}
        for t in self.targets:
            if t.name in seen_names:
                raise ValueError(f"two targets are named {t.name!r}")
            seen_names.add(t.name)
            # Scheduled-action names are only unique per resource, so two targets on one group
            # would delete each other's actions.
            key = (t.kind, t.region, t.resource)
            if key in seen_resources:
                raise ValueError(f"targets {seen_resources[key]!r} and {t.name!r} both scale {t.kind} "
                                 f"{t.resource!r} in {t.region}")
            seen_resources[key] = t.name
        return self

    def target(self, name: str) -> ScalingTarget:
        for t in self.targets:
            if t.name == name:
                return t
        raise LookupError(f"no scaling target {name!r}; configured: {', '.join(t.name for t in self.targets)}")

    def check_history(self, metrics: MetricsConfig) -> None:
        """Raise ValueError when a target names a history series that metrics.yaml does not collect."""
        for t in self.targets:
            if t.history.metric not in metrics.targets.get(t.history.target, []):
                raise ValueError(f"targets.{t.name}.history: {t.history.target}/{t.history.metric} is not a "
                                 f"series of the metrics configuration; known: "
                                 f"{', '.join(f'{a}/{b}' for a, b in metrics.series())}")


def load_scaling_config(path: str | Path, metrics: MetricsConfig | None = None) -> ScalingConfig:
    """The validated configuration at ``path``; with ``metrics``, also check that each target's
    history series exists. Errors are ValueErrors naming the file and the field."""
    try:
        raw = yaml.safe_load(Path(path).read_text())
    except (yaml.YAMLError, OSError) as exc:
        raise ValueError(f"{path}: {exc}") from None
    try:
        config = ScalingConfig.model_validate(raw)
        if metrics is not None:
            config.check_history(metrics)
        return config
    except ValidationError as exc:
        problems = [_describe(err, raw) for err in exc.errors()]
        if len(problems) == 1:
            raise ValueError(f"{path}: {problems[0]}") from None
        raise ValueError(f"{path}: {len(problems)} problems:\n" + "\n".join(f"  - {x}" for x in problems)) from None
    except ValueError as exc:
        raise ValueError(f"{path}: {exc}") from None


def _describe(err: dict, raw) -> str:
    """``targets[1] (search-api).warmup: 'soon' is not a duration ...``: the field path, with the
    target's name when the input has one, so that the reader finds the entry."""
    loc = list(err["loc"])
    where = ".".join(str(p) for p in loc) or "(top level)"
    if len(loc) >= 2 and loc[0] == "targets" and isinstance(loc[1], int):
        where = f"targets[{loc[1]}]"
        entry = raw["targets"][loc[1]] if isinstance(raw, dict) and isinstance(raw.get("targets"), list) else None
        if isinstance(entry, dict) and isinstance(entry.get("name"), str):
            where += f" ({entry['name']})"
        where += "".join(f".{p}" for p in loc[2:])
    message = err["msg"].removeprefix("Value error, ")
    return f"{where}: {message}"
