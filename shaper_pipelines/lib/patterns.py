"""Load patterns: the shape of a synthetic load over time, before ``scaling_factor``.

Each pattern is a validated pydantic model with a ``kind`` and a vectorised ``render(grid, tz)``
that returns one intensity per grid point. Patterns compose (``sum``, ``product``, ``sequence``),
so a weekday cycle plus a release ramp is one profile, not two runs to keep in step.
"""

from __future__ import annotations

from typing import Annotated, Literal, Union

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from shaper_pipelines.lib.durations import Duration
from shaper_pipelines.lib.expr import ExpressionError, compile_expression
from shaper_pipelines.lib.timegrid import TimeGrid, check_timezone

Level = Annotated[float, Field(ge=0, allow_inf_nan=False)]
MAX_NESTING = 8


class _Pattern(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    def render(self, grid: TimeGrid, tz: str) -> np.ndarray:  # pragma: no cover - abstract
        raise NotImplementedError


class Constant(_Pattern):
    """The same intensity throughout."""

    kind: Literal["constant"]
    level: Level

    def render(self, grid, tz):
        return np.full(len(grid), self.level)


class Ramp(_Pattern):
    """Linear increase (or decrease) from ``start`` to ``end`` over ``over``, then hold ``end``."""

    kind: Literal["ramp"]
    start: Level = 0.0
    end: Level
    over: Duration | None = Field(default=None, description="ramp length; the whole profile if unset")

    def render(self, grid, tz):
        span = self.over if self.over else grid.duration
        share = np.clip(grid.t / span, 0.0, 1.0) if span > 0 else np.ones(len(grid))
        return self.start + (self.end - self.start) * share


class PeakValley(_Pattern):
    """Daily cycle between ``valley`` and ``peak``, peaking at ``peak_hour`` local time.

    The daily shape is a raised cosine (``sharpness`` > 1 narrows the peak) unless
    ``hourly_shape`` gives 24 levels in [0, 1], one per local hour, as derived from history.
    ``weekday_factors`` (Monday first) scale the swing above the valley: the weekly cycle.
    """

    kind: Literal["peak_valley"]
    peak: Level
    valley: Level
    peak_hour: float = Field(default=14.0, ge=0, lt=24)
    sharpness: float = Field(default=1.0, ge=0.1, le=20)
    timezone: str | None = None
    hourly_shape: list[Annotated[float, Field(ge=0, le=1, allow_inf_nan=False)]] | None = None
    weekday_factors: list[Annotated[float, Field(ge=0, le=10, allow_inf_nan=False)]] | None = None

    @field_validator("timezone")
    @classmethod
    def _tz(cls, value):
        return None if value is None else check_timezone(value)

    @field_validator("hourly_shape")
    @classmethod
    def _hours(cls, value):
        if value is not None and len(value) != 24:
            raise ValueError(f"hourly_shape needs 24 values (one per hour), got {len(value)}")
        return value

    @field_validator("weekday_factors")
    @classmethod
    def _weekdays(cls, value):
        if value is not None and len(value) != 7:
            raise ValueError(f"weekday_factors needs 7 values (Monday first), got {len(value)}")
        return value

    @model_validator(mode="after")
    def _order(self):
        if self.valley > self.peak:
            raise ValueError(f"valley ({self.valley}) is above peak ({self.peak})")
        return self

    def render(self, grid, tz):
        zone = self.timezone or tz
        hour = grid.hour(zone)
        if self.hourly_shape is not None:
            # Levels are hourly means, placed at the half hour and interpolated around the clock.
            xs = np.arange(-0.5, 25.0, 1.0)
            ys = np.array([self.hourly_shape[-1], *self.hourly_shape, self.hourly_shape[0]])
            shape = np.interp(hour, xs, ys)
        else:
            shape = ((1.0 + np.cos(2.0 * np.pi * (hour - self.peak_hour) / 24.0)) / 2.0) ** self.sharpness
        if self.weekday_factors is not None:
            shape = shape * np.asarray(self.weekday_factors)[grid.weekday(zone).astype(np.int64)]
        return self.valley + (self.peak - self.valley) * shape


class Stage(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    duration: Duration
    target: Level


class Stages(_Pattern):
    """k6-style stages: move linearly from the previous target to each stage's target over its
    duration, starting at ``start``; hold the last target after the final stage."""

    kind: Literal["stages"]
    start: Level = 0.0
    stages: list[Stage] = Field(min_length=1, max_length=1000)

    def render(self, grid, tz):
        ends = np.cumsum([0.0] + [s.duration for s in self.stages])
        levels = np.array([self.start] + [s.target for s in self.stages])
        # A zero-length stage is a step: np.interp takes the later point at a repeated x.
        return np.interp(grid.t, ends, levels)


class Spike(_Pattern):
    """A burst: ``base`` load with a rise to ``peak`` at ``at`` lasting ``width``, repeated
    ``every`` if set. ``rise`` is the time to climb from base to peak (and to fall back)."""

    kind: Literal["spike"]
    base: Level = 0.0
    peak: Level
    at: Duration = 0.0
    width: Duration
    rise: Duration = 0.0
    every: Duration | None = None

    @model_validator(mode="after")
    def _fits(self):
        if self.width <= 0:
            raise ValueError("width must be positive")
        if self.every is not None and self.every < self.width + 2 * self.rise:
            raise ValueError("every is shorter than one spike (width + 2 * rise)")
        return self

    def render(self, grid, tz):
        since = grid.t - self.at
        if self.every:
            since = np.where(since >= 0, np.mod(since, self.every), since)
        if self.rise > 0:
            up = np.clip((since + self.rise) / self.rise, 0.0, 1.0)
            down = np.clip((self.width + self.rise - since) / self.rise, 0.0, 1.0)
            share = np.minimum(up, down)
        else:
            share = ((since >= 0) & (since < self.width)).astype(np.float64)
        return self.base + (self.peak - self.base) * share


class Replay(_Pattern):
    """A recorded series, one value per ``step``; held (or interpolated) between samples and
    looped when the profile outlasts it."""

    kind: Literal["replay"]
    values: list[Level] = Field(min_length=1, max_length=1_000_000)
    step: Duration
    interpolate: bool = False
    loop: bool = True

    @field_validator("step")
    @classmethod
    def _step(cls, value):
        if value <= 0:
            raise ValueError("step must be positive")
        return value

    def render(self, grid, tz):
        values = np.asarray(self.values, dtype=np.float64)
        position = grid.t / self.step
        if self.loop:
            position = np.mod(position, len(values))
        if self.interpolate:
            xs = np.arange(len(values) + 1) if self.loop else np.arange(len(values))
            ys = np.append(values, values[0]) if self.loop else values
            return np.interp(position, xs, ys)
        return values[np.clip(position.astype(np.int64), 0, len(values) - 1)]


class Custom(_Pattern):
    """An expression in shaper's safe expression language (see ``shaper_pipelines.lib.expr``)
    over ``t``, ``duration``, ``hour``, ``minute``, ``weekday`` and ``day_of_month``."""

    kind: Literal["custom"]
    expression: str
    seed: int = 0

    @field_validator("expression")
    @classmethod
    def _compiles(cls, value):
        try:
            compile_expression(value)
        except ExpressionError as exc:
            raise ValueError(str(exc)) from None
        return value

    def render(self, grid, tz):
        compiled = compile_expression(self.expression)
        env = {"t": grid.t, "duration": grid.duration}
        features = {"hour": grid.hour, "minute": grid.minute, "weekday": grid.weekday, "day_of_month": grid.day_of_month}
        for name in compiled.names:
            if name in features:
                env[name] = features[name](tz)
        return compiled.evaluate(env, seed=self.seed, size=len(grid))


class Sum(_Pattern):
    """Patterns added point by point: a base cycle plus a burst."""

    kind: Literal["sum"]
    patterns: list["Pattern"] = Field(min_length=2, max_length=32)

    def render(self, grid, tz):
        return np.sum([p.render(grid, tz) for p in self.patterns], axis=0)


class Product(_Pattern):
    """Patterns multiplied point by point: a daily cycle modulated by a rollout ramp."""

    kind: Literal["product"]
    patterns: list["Pattern"] = Field(min_length=2, max_length=32)

    def render(self, grid, tz):
        return np.prod([p.render(grid, tz) for p in self.patterns], axis=0)


class Part(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    duration: Duration
    pattern: "Pattern"


class Sequence(_Pattern):
    """Patterns one after another; each part sees its own ``t`` from 0 and its own duration.
    After the last part, the last part's pattern continues."""

    kind: Literal["sequence"]
    parts: list[Part] = Field(min_length=1, max_length=256)

    def render(self, grid, tz):
        out = np.empty(len(grid))
        offset = 0.0
        for i, part in enumerate(self.parts):
            last = i == len(self.parts) - 1
            mask = (grid.t >= offset) if last else (grid.t >= offset) & (grid.t < offset + part.duration)
            if mask.any():
                # Slices of a regular grid are contiguous, so a sub-grid keeps the calendar exact.
                idx = np.flatnonzero(mask)
                sub = TimeGrid(start=grid.start + offset, t=grid.t[idx] - offset, duration=part.duration)
                out[idx] = part.pattern.render(sub, tz)
            offset += part.duration
        return out


Pattern = Annotated[
    Union[Constant, Ramp, PeakValley, Stages, Spike, Replay, Custom, Sum, Product, Sequence],
    Field(discriminator="kind"),
]
PATTERN_KINDS = ("constant", "ramp", "peak_valley", "stages", "spike", "replay", "custom", "sum", "product", "sequence")

for _model in (Sum, Product, Part, Sequence):
    _model.model_rebuild()


def nesting_depth(pattern: _Pattern) -> int:
    """How deep composite patterns nest (1 for a leaf)."""
    children: list = []
    if isinstance(pattern, (Sum, Product)):
        children = list(pattern.patterns)
    elif isinstance(pattern, Sequence):
        children = [part.pattern for part in pattern.parts]
    return 1 + max((nesting_depth(c) for c in children), default=0)
