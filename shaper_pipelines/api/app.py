"""The control API: programmatic control of load generation across the agent fleet and of scaling
(plans, approval, dry run, pause), with its OpenAPI description at ``/openapi.json``.

- Everything under ``/v1`` but ``/v1/health`` needs ``Authorization: Bearer $SHAPER_API_TOKEN``;
  the check runs before routing and body parsing, so a caller without the token learns nothing.
- Work that is a Dagster run (a simulation, applying a plan) is launched as one, through the
  GraphQL API of the webserver at ``SHAPER_DAGSTER_URL``: queued by the instance's run
  coordinator and visible in the UI like any other run. Without that variable reads still work
  and launches answer 503.
- Adjusting and stopping a running simulation goes to its agent directly: it must take effect
  now, not wait in a run queue.
- Failures of what the API depends on are 502 (Dagster, an agent) or 503 (not configured, the
  database), each with a message naming what failed; a request the API cannot serve is a 4xx.

``uvicorn shaper_pipelines.api.app:app`` or ``shaper api`` serves it.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hmac
import logging
import socket
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import timezone
from typing import Annotated, Any, Callable, Literal
from urllib.parse import urlsplit

from fastapi import APIRouter, Body, Depends, FastAPI, HTTPException, Path, Query, Request, status
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from shaper_pipelines.api import models as m
from shaper_pipelines.body_limit import BodyLimitMiddleware
from shaper_pipelines.api.dagster import DagsterError, DagsterLauncher, DagsterTarget

TOKEN_VAR = "SHAPER_API_TOKEN"
DAGSTER_URL_VAR = "SHAPER_DAGSTER_URL"
MIN_TOKEN_LENGTH = 16
OPEN_PATHS = frozenset({"/v1/health"})
SIMULATION_JOB = "load_simulation_job"
APPLY_JOB = "apply_scaling_job"
DEFAULT_ACTOR = "control api"
MAX_ERRORS = 10  # validation problems listed in one 422

log = logging.getLogger("shaper.api")


class ApiConfigError(ValueError):
    """The API cannot start as configured; the message says what to set."""


@dataclass(frozen=True)
class ApiSettings:
    token: str = dataclasses.field(repr=False)
    database_url: str = dataclasses.field(repr=False)  # may hold a password
    dagster: DagsterTarget | None = None
    agents: tuple[str, ...] = ()
    agent_token: str = dataclasses.field(default="", repr=False)

    @classmethod
    def from_env(cls) -> "ApiSettings":
        from shaper_pipelines.settings import database_url, get_settings

        settings = get_settings()
        token = settings.api_token.get_secret_value()
        if not token.strip():
            raise ApiConfigError(f"{TOKEN_VAR} is not set: the control API starts and stops load and scales "
                                 f"infrastructure, so it refuses to run without a bearer token (for example "
                                 f"export {TOKEN_VAR}=$(python -c 'import secrets; print(secrets.token_urlsafe(32))'))")
        if token != token.strip() or len(token) < MIN_TOKEN_LENGTH:
            raise ApiConfigError(f"{TOKEN_VAR} must be at least {MIN_TOKEN_LENGTH} characters without surrounding "
                                 "whitespace; a short token can be guessed")
        dagster_url = settings.dagster_url
        try:
            dagster = DagsterTarget.parse(dagster_url) if dagster_url else None
        except ValueError as exc:
            raise ApiConfigError(str(exc)) from None
        return cls(token=token, database_url=database_url(), dagster=dagster, agents=tuple(settings.agents),
                   agent_token=settings.agent_token.get_secret_value())


class Stores:
    """The stores the API reads and writes, opened (and migrated) once at start."""

    def __init__(self, url: str):
        from shaper_pipelines.store.control_store import ControlStore
        from shaper_pipelines.store.profile_store import ProfileStore
        from shaper_pipelines.store.scaling_store import ScalingStore
        from shaper_pipelines.store.simulation_store import SimulationStore

        opened = []
        try:
            for cls in (ScalingStore, SimulationStore, ControlStore, ProfileStore):
                opened.append(cls(url))
        except Exception as exc:
            for s in opened:
                s.close()
            from sqlalchemy.engine import make_url

            raise ApiConfigError(f"cannot open the shaper database {make_url(url).render_as_string()}: "
                                 f"{type(exc).__name__}: {exc}") from None
        self.scaling, self.simulations, self.control, self.profiles = opened

    def close(self) -> None:
        for s in (self.scaling, self.simulations, self.control, self.profiles):
            s.close()


# -- authentication ------------------------------------------------------------------------------


def _authorised(header: str | None, token: str) -> bool:
    if not header:
        return False
    scheme, _, given = header.partition(" ")
    if scheme.lower() != "bearer" or not given.strip():
        return False
    return hmac.compare_digest(given.strip().encode("utf-8"), token.encode("utf-8"))


def _unauthorised() -> JSONResponse:
    return JSONResponse({"detail": "missing or wrong bearer token"}, status_code=401,
                        headers={"WWW-Authenticate": "Bearer"})


class BearerAuthMiddleware:
    """Refuses every /v1 request without the token before routing, so neither a 404, a 405 nor a
    422 tells an anonymous caller what exists."""

    def __init__(self, app, token: str):
        self.app, self.token = app, token

    async def __call__(self, scope, receive, send):
        if scope["type"] == "http":
            path = scope["path"]
            if (path == "/v1" or path.startswith("/v1/")) and path not in OPEN_PATHS:
                header = next((v.decode("latin-1") for k, v in scope["headers"] if k == b"authorization"), None)
                if not _authorised(header, self.token):
                    await _unauthorised()(scope, receive, send)
                    return
        await self.app(scope, receive, send)


_bearer = HTTPBearer(scheme_name="bearerAuth", bearerFormat="opaque",
                     description=f"the token in {TOKEN_VAR} on the server", auto_error=False)


def _require_token(request: Request,
                   credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]) -> None:
    """Declares the scheme in the OpenAPI description, and checks again behind the middleware."""
    given = f"Bearer {credentials.credentials}" if credentials else None
    if not _authorised(given, request.app.state.settings.token):
        raise HTTPException(401, "missing or wrong bearer token", headers={"WWW-Authenticate": "Bearer"})


# -- helpers -------------------------------------------------------------------------------------


def _stores(request: Request) -> Stores:
    return request.app.state.stores


def _launcher(request: Request) -> DagsterLauncher:
    launcher = request.app.state.launcher
    if launcher is None:
        raise HTTPException(503, f"launching runs needs a Dagster webserver: set {DAGSTER_URL_VAR} "
                                 "(for example http://127.0.0.1:3000, as `shaper ui` serves) and restart the API")
    return launcher


def _fleet(request: Request):
    return request.app.state.fleet


def _actor(actor: str | None) -> str:
    return f"{DEFAULT_ACTOR} ({actor})" if actor else DEFAULT_ACTOR


def _scaling_config():
    from shaper_pipelines.config import load_scaling

    try:
        return load_scaling()
    except ValueError as exc:
        raise HTTPException(503, f"the scaling configuration is invalid: {exc}") from None


def _scaling_target(name: str):
    config = _scaling_config()
    try:
        return config.target(name)
    except LookupError as exc:
        raise HTTPException(404, str(exc)) from None


def _rehearsed_target(name: str):
    """A scaling target that has a rehearsal section: 422 otherwise (the request names it, so it
    is the request that is wrong), 404 when there is no such target."""
    target = _scaling_target(name)
    if target.rehearsal is None:
        raise HTTPException(422, f"scaling target {name!r} has no rehearsal section in scaling.yaml")
    return target


def _plan_header(header: dict, frame) -> m.PlanHeader:
    return m.PlanHeader(plan_id=header["plan_id"], created_at=header["created_at"],
                        produced_by=header["produced_by"], model=header["model"], rows=len(frame),
                        first=frame["timestamp"].iloc[0].to_pydatetime(),
                        last=frame["timestamp"].iloc[-1].to_pydatetime(),
                        peak_capacity=int(frame["desired_capacity"].max()))


def _agent_call(url: str, run_key: str | None, call: Callable[[], Any]) -> Any:
    """An agent's answer, or the HTTP error that says which agent failed and how."""
    from shaper_pipelines.agent.client import AgentError, AgentUnreachable

    try:
        return call()
    except AgentUnreachable as exc:
        raise HTTPException(502, str(exc)) from None
    except AgentError as exc:
        if exc.status == 404 and run_key:
            raise HTTPException(404, f"agent {url} does not know run {run_key!r} (was it restarted?)") from None
        if exc.status == 422:
            raise HTTPException(422, str(exc)) from None
        raise HTTPException(502, str(exc)) from None


def _stored_run(stores: Stores, run_key: str) -> dict:
    try:
        return stores.simulations.run(run_key)
    except LookupError as exc:
        raise HTTPException(404, str(exc)) from None


def _utc_run(row: dict) -> dict:
    # SQLite hands back naive datetimes even for timezone=True columns; shaper writes only UTC.
    at = row["dispatched_at"]
    return {**row, "dispatched_at": at.replace(tzinfo=timezone.utc) if at.tzinfo is None else at}


def _client_for(fleet, url: str):
    try:
        return fleet.client_for(url)
    except LookupError as exc:
        raise HTTPException(409, f"{exc}: its runs cannot be controlled from here (SHAPER_AGENTS)") from None


def _agent_run(run_key: str, url: str, view: dict) -> m.AgentRun:
    return m.AgentRun(run_key=run_key, agent_url=url, profile_id=view.get("profile_id", ""),
                      status=view.get("status", ""), intensity=float(view.get("intensity", 0.0)),
                      reason=view.get("reason", ""), elapsed_s=int(view.get("elapsed_s", 0)),
                      duration_s=int(view.get("duration_s", 0)))


def _listening(url: str) -> bool:
    parts = urlsplit(url)
    try:
        with socket.create_connection((parts.hostname, parts.port or 80), timeout=2):
            return True
    except OSError:
        return False


def _stop_agent(client, local: bool) -> m.AgentStop:
    from shaper_pipelines.agent.client import AgentError, AgentUnreachable

    try:
        return m.AgentStop(agent_url=client.url, outcome="stopped", stopped=client.stop_all().get("stopped", []))
    except AgentUnreachable as exc:
        # The embedded default's agent exits when idle: nothing listening on loopback is nothing running.
        if local and not _listening(client.url):
            return m.AgentStop(agent_url=client.url, outcome="not-running", stopped=[],
                               error="the local agent is not running")
        return m.AgentStop(agent_url=client.url, outcome="unreachable", stopped=[], error=str(exc))
    except AgentError as exc:
        return m.AgentStop(agent_url=client.url, outcome="refused", stopped=[], error=str(exc))


_ERRORS = {code: {"model": m.Error} for code in (401, 404, 409, 502, 503)}


def _responses(*codes: int) -> dict:
    return {c: _ERRORS[c] for c in (401, *codes)}


# -- the application -----------------------------------------------------------------------------


def create_app(settings: ApiSettings | None = None) -> FastAPI:
    """The API for ``settings`` (default: from the environment); raises ApiConfigError when it
    must not start."""
    from shaper_pipelines.resources.fleet import AgentFleetResource

    settings = settings or ApiSettings.from_env()
    stores = Stores(settings.database_url)

    @contextlib.asynccontextmanager
    async def lifespan(_app):
        try:
            yield
        finally:
            stores.close()

    app = FastAPI(
        lifespan=lifespan,
        title="shaper control API",
        version="1",
        description="Control load generation across the agent fleet and scaling (plans, approval, dry run, "
                    "pause). Every /v1 operation except /v1/health needs `Authorization: Bearer <token>`.",
    )
    app.state.settings = settings
    app.state.stores = stores
    app.state.launcher = DagsterLauncher(settings.dagster) if settings.dagster else None
    app.state.fleet = AgentFleetResource(agents=list(settings.agents), token=settings.agent_token)
    app.add_middleware(BearerAuthMiddleware, token=settings.token)
    app.add_middleware(BodyLimitMiddleware)  # outermost: a body over the cap is refused before anything else
    _exception_handlers(app)

    app.include_router(_public())
    app.include_router(_metrics())
    app.include_router(_simulations())
    app.include_router(_scaling())
    return app


def _exception_handlers(app: FastAPI) -> None:
    from sqlalchemy.exc import SQLAlchemyError

    @app.exception_handler(RequestValidationError)
    async def _invalid(_request, exc: RequestValidationError):
        # FastAPI's default 422 echoes each invalid ``input``: a large body came back doubled. Only
        # where, why and what kind, each cut short, and at most MAX_ERRORS of them.
        errors = exc.errors()
        detail = [{"loc": [part if isinstance(part, int) else str(part)[:60] for part in e.get("loc", ())][:12],
                   "msg": str(e.get("msg", ""))[:200], "type": str(e.get("type", ""))[:60]}
                  for e in errors[:MAX_ERRORS]]
        if len(errors) > MAX_ERRORS:
            detail.append({"loc": [], "msg": f"and {len(errors) - MAX_ERRORS} more problem(s)", "type": "truncated"})
        return JSONResponse({"detail": detail}, status_code=422)

    @app.exception_handler(DagsterError)
    async def _dagster(_request, exc: DagsterError):
        return JSONResponse({"detail": str(exc)}, status_code=502)

    @app.exception_handler(SQLAlchemyError)
    async def _database(_request, exc: SQLAlchemyError):
        log.error("database error: %s", exc)
        return JSONResponse({"detail": f"the shaper database is unavailable: {type(exc).__name__}: "
                                       f"{str(exc).splitlines()[0] if str(exc) else ''}"}, status_code=503)

    @app.exception_handler(Exception)
    async def _unexpected(_request, exc: Exception):
        log.exception("unexpected error")
        return JSONResponse({"detail": f"internal error: {type(exc).__name__}: {exc}"}, status_code=500)


def _public() -> APIRouter:
    router = APIRouter(prefix="/v1", tags=["health"])

    @router.get("/health", response_model=m.Health, summary="Liveness (no token needed)")
    def health():
        return {"status": "ok"}

    return router


def _metrics() -> APIRouter:
    """The newest Prometheus export (``prometheus_export`` without a Pushgateway writes it under
    SHAPER_HOME) as a scrape endpoint, so a Prometheus can be pointed at shaper directly. Outside
    /v1 and without a token, as scrape targets usually are: it holds predictions, not controls."""
    from fastapi.responses import PlainTextResponse

    router = APIRouter(tags=["metrics"])

    @router.get("/metrics", response_class=PlainTextResponse, responses={503: {"description": "nothing exported yet"}},
                summary="shaper's predictions in the Prometheus text format")
    def metrics():
        from shaper_pipelines.resources.pushgateway import PushgatewayResource

        path = PushgatewayResource().textfile()
        try:
            text = path.read_text()
        except OSError:
            return PlainTextResponse(f"# nothing exported yet at {path}: materialise prometheus_export\n",
                                     status_code=503)
        return PlainTextResponse(text, media_type="text/plain; version=0.0.4")

    return router


RunKey = Annotated[str, Path(pattern=m.RUN_KEY_PATTERN, description="the agent's run id")]
TargetName = Annotated[str, Path(pattern=m.NAME_PATTERN, description="a scaling target's name in scaling.yaml")]


def _simulations() -> APIRouter:
    router = APIRouter(prefix="/v1/simulations", tags=["simulations"], dependencies=[Depends(_require_token)])

    @router.get("", response_model=list[m.SimulationRun], responses=_responses(503),
                summary="Recorded simulation runs (one per agent a profile was dispatched to)")
    def list_simulations(request: Request, status_: Annotated[
            Literal["dispatched", "finished", "stopped", "failed"] | None, Query(alias="status")] = None):
        return [_utc_run(r) for r in _stores(request).simulations.runs(status=status_)]

    @router.post("", status_code=status.HTTP_202_ACCEPTED, response_model=m.Launch, responses=_responses(502, 503),
                 summary="Launch a load_simulation_job run of the given profiles")
    def launch_simulation(request: Request, body: m.SimulationRequest):
        ids = list(dict.fromkeys(body.profile_ids))
        stored = {s.profile_id for s in _stores(request).profiles.list()}
        missing = [p for p in ids if p not in stored]
        if missing:
            raise HTTPException(422, f"profiles not in the profile store: {', '.join(missing)}")
        launcher = _launcher(request)
        actor = _actor(body.actor)
        run_config = {"ops": {"select_profiles": {"config": {
            "profile_ids": ids, "events": [], "window_minutes": body.window_minutes, "intensity": body.intensity,
            "http_target": str(body.http_target) if body.http_target else ""}}}}
        if body.scaling_target:
            _rehearsed_target(body.scaling_target)
            run_config["ops"]["select_profiles"]["config"]["scaling_target"] = body.scaling_target
        run_id = launcher.launch(SIMULATION_JOB, run_config, {"shaper/launched_by": "control-api",
                                                             "shaper/actor": actor})
        log.info("%s launched %s run %s for %s", actor, SIMULATION_JOB, run_id, ", ".join(ids))
        return m.Launch(run_id=run_id, job=SIMULATION_JOB, run_config=run_config,
                        dagster_run_url=launcher.run_url(run_id))

    @router.post("/stop-all", response_model=m.StopAllReport,
                 responses={**_responses(), 502: {"model": m.StopAllReport,
                                                  "description": "some agent or Dagster did not confirm"}},
                 summary="Kill switch: stop every run on every agent, and cancel queued and running simulations")
    def stop_all(request: Request):
        from shaper_pipelines.agent.local import known_local_agent
        from shaper_pipelines.settings import shaper_home

        launcher, fleet = request.app.state.launcher, _fleet(request)
        dagster = m.DagsterStop(configured=launcher is not None)
        if launcher is not None:
            # First, so that a run about to dispatch cannot start load after the agents were cleared.
            try:
                dagster.terminated = launcher.active_runs(SIMULATION_JOB)
                launcher.terminate(dagster.terminated)
            except DagsterError as exc:
                dagster.error = str(exc)
        if fleet.agents:
            from shaper_pipelines.agent.client import AgentClient

            clients, local = [AgentClient(url, fleet.token) for url in fleet.agents], False
        else:
            known = known_local_agent(shaper_home())
            clients, local = ([known] if known else []), True
        with ThreadPoolExecutor(max_workers=max(1, min(32, len(clients)))) as pool:
            agents = list(pool.map(lambda c: _stop_agent(c, local), clients))
        confirmed = all(a.outcome in ("stopped", "not-running") for a in agents) and not dagster.error
        report = m.StopAllReport(confirmed=confirmed, agents=agents, dagster=dagster)
        log.warning("stop-all: %s", report.model_dump_json())
        return JSONResponse(report.model_dump(mode="json"), status_code=200 if confirmed else 502)

    @router.get("/{run_key}", response_model=m.SimulationRun, responses=_responses(404, 503),
                summary="One recorded simulation run")
    def get_simulation(request: Request, run_key: RunKey):
        return _utc_run(_stored_run(_stores(request), run_key))

    @router.patch("/{run_key}", response_model=m.AgentRun, responses=_responses(404, 409, 502, 503),
                  summary="Change a running simulation's intensity on its agent")
    def adjust_simulation(request: Request, run_key: RunKey, body: m.IntensityChange):
        run = _stored_run(_stores(request), run_key)
        if run["status"] != "dispatched":
            raise HTTPException(409, f"simulation run {run_key} has ended ({run['status']}); nothing to adjust")
        url = run["agent_url"]
        client = _client_for(_fleet(request), url)
        view = _agent_call(url, run_key, lambda: client.get(run_key))
        if view.get("status") != "running":
            raise HTTPException(409, f"simulation run {run_key} has ended on agent {url} ({view.get('status')}"
                                     f"{': ' + view['reason'] if view.get('reason') else ''}); nothing to adjust")
        view = _agent_call(url, run_key, lambda: client.adjust(run_key, body.intensity))
        log.info("simulation run %s on %s: intensity %g", run_key, url, body.intensity)
        return _agent_run(run_key, url, view)

    @router.delete("/{run_key}", response_model=m.AgentRun, responses=_responses(404, 409, 502, 503),
                   summary="Stop a simulation run on its agent")
    def stop_simulation(request: Request, run_key: RunKey):
        run = _stored_run(_stores(request), run_key)
        if run["status"] != "dispatched":
            raise HTTPException(409, f"simulation run {run_key} has already ended ({run['status']})")
        url = run["agent_url"]
        client = _client_for(_fleet(request), url)
        view = _agent_call(url, run_key, lambda: client.stop(run_key))
        log.info("simulation run %s on %s stopped on request", run_key, url)
        return _agent_run(run_key, url, view)

    return router


def _scaling() -> APIRouter:
    router = APIRouter(prefix="/v1", tags=["scaling"], dependencies=[Depends(_require_token)])

    @router.get("/plans", response_model=list[m.TargetPlans], responses=_responses(503),
                summary="Every scaling target of scaling.yaml with its newest plan")
    def list_plans(request: Request):
        store = _stores(request).scaling
        out = []
        for t in _scaling_config().targets:
            try:
                header, frame = store.latest_plan(t.name)
                plan = _plan_header(header, frame)
            except LookupError:
                plan = None
            out.append(m.TargetPlans(target=t.name, kind=t.kind, resource=t.resource, region=t.region,
                                     min_capacity=t.min_capacity, max_capacity=t.max_capacity, plan=plan))
        return out

    @router.get("/plans/{target}", response_model=m.Plan, responses=_responses(404, 503),
                summary="A target's newest plan: desired capacity over time, each with its reason")
    def get_plan(request: Request, target: TargetName):
        _scaling_target(target)
        try:
            header, frame = _stores(request).scaling.latest_plan(target)
        except LookupError as exc:
            raise HTTPException(404, str(exc)) from None
        rows = [m.PlanRow(timestamp=ts.to_pydatetime(), desired_capacity=int(c), reason=r)
                for ts, c, r in zip(frame["timestamp"], frame["desired_capacity"], frame["reason"])]
        return m.Plan(target=target, header=_plan_header(header, frame), rows=rows)

    @router.post("/plans/{target}/approve", status_code=status.HTTP_202_ACCEPTED, response_model=m.ApprovalLaunch,
                 responses=_responses(404, 409, 502, 503),
                 summary="Approve a target's newest plan: launch apply_scaling_job for it")
    def approve_plan(request: Request, target: TargetName,
                     body: Annotated[m.Approval | None, Body()] = None):
        body = body or m.Approval()
        _scaling_target(target)
        stores = _stores(request)
        mode = stores.control.scaling_mode()
        if mode.paused:
            raise HTTPException(409, f"scaling is paused (by {mode.changed_by} at {mode.changed_at:%Y-%m-%d %H:%M:%S} "
                                     f"UTC{': ' + mode.note if mode.note else ''}); nothing is applied until "
                                     "PUT /v1/scaling/mode sets paused to false")
        try:
            header, _frame = stores.scaling.latest_plan(target)
        except LookupError:
            raise HTTPException(409, f"there is no plan for {target} to approve yet: materialise scaling_plan "
                                     "(plan_job) first") from None
        if body.plan_id is not None and body.plan_id != header["plan_id"]:
            raise HTTPException(409, f"plan {body.plan_id} is not the newest plan for {target} (plan "
                                     f"{header['plan_id']} is); review it and approve that one")
        launcher = _launcher(request)
        dry_run = mode.dry_run if body.dry_run is None else body.dry_run
        actor = _actor(body.actor)
        run_config = {"ops": {"apply_scaling_plans": {"config": {"dry_run": dry_run, "targets": [target],
                                                                 "actor": actor}}}}
        run_id = launcher.launch(APPLY_JOB, run_config, {"shaper/launched_by": "control-api", "shaper/actor": actor,
                                                         "shaper/target": target,
                                                         "shaper/plan_id": str(header["plan_id"])})
        log.info("%s approved plan %s for %s (dry_run=%s): run %s", actor, header["plan_id"], target, dry_run, run_id)
        return m.ApprovalLaunch(run_id=run_id, job=APPLY_JOB, run_config=run_config,
                                dagster_run_url=launcher.run_url(run_id), target=target,
                                plan_id=header["plan_id"], dry_run=dry_run)

    @router.get("/scaling/mode", response_model=m.ScalingMode, responses=_responses(503),
                summary="Whether approvals are dry runs by default, and whether scaling is paused")
    def get_mode(request: Request):
        return dataclasses.asdict(_stores(request).control.scaling_mode())

    @router.put("/scaling/mode", response_model=m.ScalingMode, responses=_responses(503),
                summary="Set dry run and pause")
    def put_mode(request: Request, body: m.ScalingModeChange):
        mode = _stores(request).control.set_scaling_mode(dry_run=body.dry_run, paused=body.paused,
                                                         actor=_actor(body.actor), note=body.note)
        log.warning("scaling mode set by %s: dry_run=%s paused=%s", mode.changed_by, mode.dry_run, mode.paused)
        return dataclasses.asdict(mode)

    @router.get("/actions", response_model=list[m.Action], responses=_responses(404, 503),
                summary="The audit trail: what shaper did, or would have done, to AWS")
    def list_actions(request: Request,
                     target: Annotated[str | None, Query(pattern=m.NAME_PATTERN)] = None,
                     limit: Annotated[int, Query(ge=1, le=10_000, description="the newest this many")] = 500):
        rows = _stores(request).scaling.actions(target)
        if target is not None and not rows:
            # Actions of a target since removed from scaling.yaml stay readable; a name that is
            # neither configured nor in the trail is unknown.
            _scaling_target(target)
        return rows[-limit:]

    return router


def __getattr__(name: str):
    # `uvicorn shaper_pipelines.api.app:app`: built on first access, so that importing this module
    # needs no token and no database.
    if name == "app":
        return create_app()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
