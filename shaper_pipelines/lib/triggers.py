"""When a profile becomes relevant: a cron schedule, a named external event, or a metric condition.

Each trigger is validated where it is written, so a typo in a cron field or an empty PromQL
expression is refused when the profile is stored, not discovered the night it should have fired.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal, Union

from croniter import CroniterBadDateError, croniter
from pydantic import BaseModel, ConfigDict, Field, field_validator

from shaper_pipelines.lib.durations import Duration
from shaper_pipelines.lib.timegrid import check_timezone

COMPARATORS = (">", ">=", "<", "<=", "==", "!=")
_MAX_PROMQL = 4000


class _Trigger(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class CronTrigger(_Trigger):
    """Due on a cron schedule in a time zone (``0 22 L * *``: 22:00 on the last day of the month)."""

    kind: Literal["cron"]
    cron: str
    timezone: str = "UTC"

    @field_validator("cron")
    @classmethod
    def _cron(cls, value):
        value = " ".join(value.split())
        if len(value.split(" ")) != 5 or not croniter.is_valid(value):
            raise ValueError(f"{value!r} is not a valid 5-field cron expression (minute hour day month weekday)")
        # Valid field by field but never due (``0 0 31 2 *``): the selection would fail later, for
        # every profile, when it asks when this one is next due.
        try:
            croniter(value, datetime(2000, 1, 1)).get_next(datetime)
        except CroniterBadDateError:
            raise ValueError(f"{value!r} never fires (no such date, e.g. 31 February)") from None
        return value

    @field_validator("timezone")
    @classmethod
    def _tz(cls, value):
        return check_timezone(value)


class EventTrigger(_Trigger):
    """Due when a named external event arrives (a release, a campaign start)."""

    kind: Literal["event"]
    event: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}$")


class MetricTrigger(_Trigger):
    """Due while ``promql comparator threshold`` has held for ``for`` (as Prometheus alert rules)."""

    kind: Literal["metric"]
    promql: str
    comparator: str
    threshold: float = Field(allow_inf_nan=False)
    for_: Duration = Field(default=0.0, alias="for")

    @field_validator("promql")
    @classmethod
    def _promql(cls, value):
        value = value.strip()
        if not value:
            raise ValueError("promql is empty")
        if len(value) > _MAX_PROMQL:
            raise ValueError(f"promql is longer than {_MAX_PROMQL} characters")
        pairs = {")": "(", "]": "[", "}": "{"}
        stack: list[str] = []
        for ch in value:
            if ch in "([{":
                stack.append(ch)
            elif ch in pairs:
                if not stack or stack.pop() != pairs[ch]:
                    raise ValueError(f"promql has an unmatched {ch!r}")
        if stack:
            raise ValueError(f"promql has an unclosed {stack[-1]!r}")
        return value

    @field_validator("comparator")
    @classmethod
    def _comparator(cls, value):
        if value not in COMPARATORS:
            raise ValueError(f"unknown comparator {value!r}; use one of {', '.join(COMPARATORS)}")
        return value


Trigger = Annotated[Union[CronTrigger, EventTrigger, MetricTrigger], Field(discriminator="kind")]
TRIGGER_KINDS = ("cron", "event", "metric")
