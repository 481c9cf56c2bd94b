"""Request and response bodies of the control API. Requests are strict (unknown fields, out-of-range
numbers and malformed names are a 422 before anything happens); responses say what was done."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import AnyHttpUrl, BaseModel, ConfigDict, Field, StrictBool, UrlConstraints

# The same rule as a profile's id and a scaling target's name ([a-z0-9._-], up to 100 characters).
NAME_PATTERN = r"^[a-z0-9][a-z0-9._-]{0,99}$"
# An agent's run id (hex today); anything that could not be one is refused before a lookup.
RUN_KEY_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$"
# Who asked, for the audit trail: printable, no control characters.
ACTOR_PATTERN = r"^[\x21-\x7e][\x20-\x7e]{0,99}$"

Name = Annotated[str, Field(pattern=NAME_PATTERN, examples=["checkout-api-asg"])]
Actor = Annotated[str, Field(pattern=ACTOR_PATTERN, description="who asks, recorded with what is done",
                             examples=["alice"])]
Intensity = Annotated[float, Field(gt=0, le=1, allow_inf_nan=False,
                                   description="multiplies the profile's load; 0 < intensity <= 1")]
HttpTarget = Annotated[AnyHttpUrl, UrlConstraints(max_length=2000, allowed_schemes=["http", "https"])]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Error(BaseModel):
    detail: str


class Health(BaseModel):
    status: Literal["ok"]


# -- simulations ---------------------------------------------------------------------------------


class SimulationRun(BaseModel):
    run_key: str = Field(description="the agent's run id")
    profile_id: str
    profile_version: int
    agent_url: str
    resource: str
    intensity: float = Field(description="the intensity the run was dispatched with")
    dispatched_at: datetime
    dispatched_by: str
    status: str = Field(description="dispatched (not yet collected), finished, stopped or failed")
    reason: str


class SimulationRequest(Strict):
    profile_ids: list[Name] = Field(min_length=1, max_length=100,
                                    description="stored profiles to rehearse, whatever their triggers say")
    intensity: Intensity
    window_minutes: float = Field(default=60.0, ge=1, le=1440, allow_inf_nan=False,
                                  description="a cron trigger counts as due if it fired this recently")
    http_target: HttpTarget | None = Field(default=None,
                                           description="the URL network_io rehearsals send requests to")
    scaling_target: Name | None = Field(
        default=None, description="a capacity rehearsal of this scaling target's service: watched and stopped as "
                                  "its scaling.yaml rehearsal section says (its url unless http_target is given)")
    actor: Actor | None = None


class IntensityChange(Strict):
    intensity: Intensity


class AgentRun(BaseModel):
    """A run as its agent sees it now."""

    run_key: str
    agent_url: str
    profile_id: str
    status: str = Field(description="running, finished, stopped or failed")
    intensity: float
    reason: str
    elapsed_s: int
    duration_s: int


class AgentStop(BaseModel):
    agent_url: str
    outcome: Literal["stopped", "not-running", "unreachable", "refused"]
    stopped: list[str] = Field(description="run ids the agent stopped")
    error: str = ""


class DagsterStop(BaseModel):
    configured: bool
    terminated: list[str] = Field(default_factory=list,
                                  description="queued or running load_simulation_job runs terminated")
    error: str = ""


class StopAllReport(BaseModel):
    confirmed: bool = Field(description="every agent confirmed, and Dagster (if configured) answered")
    agents: list[AgentStop]
    dagster: DagsterStop


class Launch(BaseModel):
    run_id: str
    job: str
    run_config: dict[str, Any]
    dagster_run_url: str


# -- scaling -------------------------------------------------------------------------------------


class PlanHeader(BaseModel):
    plan_id: int
    created_at: datetime
    produced_by: str
    model: str
    rows: int
    first: datetime
    last: datetime
    peak_capacity: int


class TargetPlans(BaseModel):
    target: str
    kind: str
    resource: str
    region: str
    min_capacity: int
    max_capacity: int
    plan: PlanHeader | None = Field(description="the newest plan; null when none has been saved")


class PlanRow(BaseModel):
    timestamp: datetime
    desired_capacity: int
    reason: str


class Plan(BaseModel):
    target: str
    header: PlanHeader
    rows: list[PlanRow]


class Approval(Strict):
    dry_run: StrictBool | None = Field(default=None, description="default: the current scaling mode's dry_run")
    plan_id: int | None = Field(default=None, ge=1, le=2**31 - 1,
                                description="refuse unless this is still the target's newest plan")
    actor: Actor | None = None


class ApprovalLaunch(Launch):
    target: str
    plan_id: int
    dry_run: bool


class ScalingMode(BaseModel):
    dry_run: bool
    paused: bool
    changed_at: datetime | None = Field(description="null: never set, the default is in force")
    changed_by: str
    note: str


class ScalingModeChange(Strict):
    dry_run: StrictBool
    paused: StrictBool
    # No NUL: PostgreSQL text cannot hold one.
    note: str = Field(default="", max_length=2000, pattern=r"^[^\x00]*$", description="why, for the record")
    actor: Actor | None = None


class Action(BaseModel):
    id: int
    at: datetime
    actor: str
    target: str
    kind: str
    resource: str
    action: str
    params: Any = Field(description="the AWS operation's parameters")
    reason: str
    dry_run: bool
    outcome: str
    plan_id: int | None
