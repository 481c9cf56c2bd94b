"""The control API against a real Dagster webserver: authentication, plans and the audit trail as
stored, the scaling mode, and approvals and simulations launched as Dagster runs (QUEUED: no
daemon runs here, so nothing executes)."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from datetime import datetime, timezone

import pandas as pd
import pytest
import yaml

from shaper_pipelines.store.control_store import ControlStore
from shaper_pipelines.store.scaling_store import ScalingStore
from shaper_pipelines_tests.api.conftest import TOKEN, ApiProcess, dagster_run, graphql, shaper_env, sqlite_url
from shaper_pipelines_tests.conftest import PROJECT

T0 = pd.Timestamp("2026-12-01T08:00:00Z")


def plan_frame(capacities: list[int], reasons: list[str] | None = None) -> pd.DataFrame:
    return pd.DataFrame({"timestamp": [T0 + pd.Timedelta(hours=h) for h in range(len(capacities))],
                         "desired_capacity": capacities,
                         "reason": reasons or [f"hour {h}" for h in range(len(capacities))]})


def action(target: str, **changes) -> dict:
    base = {"at": datetime(2026, 11, 28, 9, 30, tzinfo=timezone.utc), "actor": "dagster run 1", "target": target,
            "kind": "ecs", "resource": "service/prod/search-api", "action": "put_scheduled_action",
            "params": {"ScalableTargetAction": {"MinCapacity": 5}}, "reason": "p90 forecast at 08:00",
            "dry_run": True, "outcome": "would-apply", "plan_id": None}
    return {**base, **changes}


@pytest.fixture(scope="module")
def home(tmp_path_factory):
    return tmp_path_factory.mktemp("api") / "shaper_home"


@pytest.fixture(scope="module")
def api(home, dagster_webserver):
    server = ApiProcess(shaper_env(home, SHAPER_API_TOKEN=TOKEN, SHAPER_DAGSTER_URL=dagster_webserver.url),
                        home.parent)
    yield server
    server.stop()


@pytest.fixture(scope="module")
def plans(api, home):
    """Two plans for search-api (the second is the newest) and none for checkout-api-asg."""
    with ScalingStore(sqlite_url(home)) as store:
        old = store.save_plan("search-api", plan_frame([9, 9]), produced_by="run-old", model="naive")
        new = store.save_plan("search-api", plan_frame([2, 5, 3], ["night floor", "08:00 peak, p90 x 1.2", "after"]),
                              produced_by="run-new", model="prophet p90")
    return {"old": old, "new": new}


def apply_runs(dagster_url: str) -> list[str]:
    data = graphql(dagster_url, """query { runsOrError(filter: {pipelineName: "apply_scaling_job"}) {
        ... on Runs { results { runId } } } }""")
    return [r["runId"] for r in data["runsOrError"]["results"]]


def test_every_v1_operation_but_health_needs_the_token(api):
    with urllib.request.urlopen(f"{api.url}/openapi.json", timeout=10) as r:
        spec = json.load(r)
    assert spec["components"]["securitySchemes"]["bearerAuth"] == {
        "type": "http", "scheme": "bearer", "bearerFormat": "opaque",
        "description": "the token in SHAPER_API_TOKEN on the server"}
    operations = [(method.upper(), path) for path, item in spec["paths"].items() for method in item]
    assert len(operations) == 14
    for method, path in operations:
        if path == "/metrics":  # a scrape target, open like every Prometheus endpoint: predictions, no controls
            assert not spec["paths"][path]["get"].get("security")
            continue
        secured = spec["paths"][path][method.lower()].get("security")
        concrete = path.replace("{run_key}", "abc123").replace("{target}", "search-api")
        if path == "/v1/health":
            assert not secured
            assert api.call(method, concrete, token=None) == (200, {"status": "ok"})
            continue
        assert secured == [{"bearerAuth": []}], path
        for token in (None, "wrong-token-0123456789", TOKEN + "x", TOKEN[:-1]):
            status, body = api.call(method, concrete, {"intensity": 0.5}, token=token)
            assert (status, body) == (401, {"detail": "missing or wrong bearer token"}), (method, path, token)
    # Before routing and validation: an anonymous caller cannot tell what exists or what is valid.
    assert api.call("GET", "/v1/no-such-thing", token=None)[0] == 401
    assert api.call("PATCH", "/v1/simulations/abc", {"intensity": 7}, token=None)[0] == 401
    req = urllib.request.Request(f"{api.url}/v1/plans", headers={"Authorization": f"Basic {TOKEN}"})
    with pytest.raises(urllib.error.HTTPError) as err:
        urllib.request.urlopen(req, timeout=10)
    assert err.value.code == 401 and err.value.headers["WWW-Authenticate"] == "Bearer"
    assert api.call("GET", "/v1/plans")[0] == 200


def test_the_scaling_mode_round_trips_through_the_database_and_pause_refuses_approvals(api, home, plans,
                                                                                    dagster_webserver):
    assert api.call("GET", "/v1/scaling/mode") == (200, {"dry_run": True, "paused": False, "changed_at": None,
                                                         "changed_by": "", "note": "default"})
    status, mode = api.call("PUT", "/v1/scaling/mode", {"dry_run": False, "paused": True,
                                                        "note": "incident 42", "actor": "alice"})
    assert status == 200, mode
    assert (mode["dry_run"], mode["paused"], mode["note"], mode["changed_by"]) == (
        False, True, "incident 42", "control api (alice)")
    assert api.call("GET", "/v1/scaling/mode") == (200, mode)
    with ControlStore(sqlite_url(home)) as control:
        stored = control.scaling_mode()
    assert (stored.dry_run, stored.paused, stored.changed_by) == (False, True, "control api (alice)")

    before = apply_runs(dagster_webserver.url)
    status, body = api.call("POST", "/v1/plans/search-api/approve", {"dry_run": True})
    assert status == 409
    assert "scaling is paused (by control api (alice)" in body["detail"] and "incident 42" in body["detail"]
    assert "paused to false" in body["detail"]
    assert apply_runs(dagster_webserver.url) == before  # nothing was launched

    for bad in ({"dry_run": "yes", "paused": False}, {"dry_run": 1, "paused": False}, {"dry_run": True},
                {"dry_run": True, "paused": False, "extra": 1}, {"dry_run": True, "paused": False, "note": "a\x00b"},
                {"dry_run": True, "paused": False, "actor": "\n"}):
        status, body = api.call("PUT", "/v1/scaling/mode", bad)
        assert status == 422, (bad, body)
    assert api.call("GET", "/v1/scaling/mode")[1] == mode  # refused changes changed nothing

    status, mode = api.call("PUT", "/v1/scaling/mode", {"dry_run": True, "paused": False})
    assert status == 200 and (mode["dry_run"], mode["paused"], mode["changed_by"]) == (True, False, "control api")


def test_plans_are_read_with_their_reasons(api, plans):
    status, targets = api.call("GET", "/v1/plans")
    assert status == 200
    by_name = {t["target"]: t for t in targets}
    assert set(by_name) == {"checkout-api-asg", "search-api"}  # every target of scaling.yaml
    assert by_name["checkout-api-asg"]["plan"] is None
    search = by_name["search-api"]
    assert (search["kind"], search["resource"], search["min_capacity"], search["max_capacity"]) == (
        "ecs", "service/prod/search-api", 2, 40)
    header = search["plan"]
    assert (header["plan_id"], header["produced_by"], header["model"]) == (plans["new"], "run-new", "prophet p90")
    assert (header["rows"], header["peak_capacity"]) == (3, 5)
    assert header["first"] == "2026-12-01T08:00:00Z" and header["last"] == "2026-12-01T10:00:00Z"

    status, plan = api.call("GET", "/v1/plans/search-api")
    assert status == 200
    assert plan["header"] == header
    assert plan["rows"] == [
        {"timestamp": "2026-12-01T08:00:00Z", "desired_capacity": 2, "reason": "night floor"},
        {"timestamp": "2026-12-01T09:00:00Z", "desired_capacity": 5, "reason": "08:00 peak, p90 x 1.2"},
        {"timestamp": "2026-12-01T10:00:00Z", "desired_capacity": 3, "reason": "after"}]

    status, body = api.call("GET", "/v1/plans/checkout-api-asg")
    assert status == 404 and "no scaling plan for target 'checkout-api-asg'" in body["detail"]
    status, body = api.call("GET", "/v1/plans/no-such-target")
    assert status == 404 and "no scaling target 'no-such-target'; configured: checkout-api-asg, search-api" == body["detail"]
    for bad in ("Search-API", "-x", "a" * 101, "a%20b"):
        assert api.call("GET", f"/v1/plans/{bad}")[0] == 422, bad


def test_the_audit_trail_is_read_as_recorded(api, home, plans):
    with ScalingStore(sqlite_url(home)) as store:
        store.record_actions([action("search-api", plan_id=plans["new"]),
                              action("search-api", action="delete_scheduled_action", params={"Name": "old"},
                                     outcome="failed: throttled", dry_run=False),
                              action("retired-target", kind="asg", resource="old-asg")])
    status, rows = api.call("GET", "/v1/actions")
    assert status == 200 and len(rows) == 3
    assert rows[0] == {"id": rows[0]["id"], "at": "2026-11-28T09:30:00Z", "actor": "dagster run 1",
                       "target": "search-api", "kind": "ecs", "resource": "service/prod/search-api",
                       "action": "put_scheduled_action", "params": {"ScalableTargetAction": {"MinCapacity": 5}},
                       "reason": "p90 forecast at 08:00", "dry_run": True, "outcome": "would-apply",
                       "plan_id": plans["new"]}
    status, rows = api.call("GET", "/v1/actions?target=search-api")
    assert status == 200 and [r["outcome"] for r in rows] == ["would-apply", "failed: throttled"]
    status, rows = api.call("GET", "/v1/actions?target=search-api&limit=1")
    assert status == 200 and [r["outcome"] for r in rows] == ["failed: throttled"]  # the newest
    # A target no longer in scaling.yaml keeps its trail; a configured one without actions has none.
    assert [r["resource"] for r in api.call("GET", "/v1/actions?target=retired-target")[1]] == ["old-asg"]
    assert api.call("GET", "/v1/actions?target=checkout-api-asg") == (200, [])
    status, body = api.call("GET", "/v1/actions?target=never-heard-of")
    assert status == 404 and "never-heard-of" in body["detail"]
    for bad in ("target=UPPER", "limit=0", "limit=10001", "limit=x"):
        assert api.call("GET", f"/v1/actions?{bad}")[0] == 422, bad


def test_approving_launches_apply_scaling_job_for_the_target(api, plans, dagster_webserver):
    api.call("PUT", "/v1/scaling/mode", {"dry_run": False, "paused": False})
    status, launch = api.call("POST", "/v1/plans/search-api/approve")
    assert status == 202, launch
    expected = {"ops": {"apply_scaling_plans": {"config": {"dry_run": False, "targets": ["search-api"],
                                                           "actor": "control api"}}}}
    assert launch["job"] == "apply_scaling_job" and launch["run_config"] == expected
    assert (launch["target"], launch["plan_id"], launch["dry_run"]) == ("search-api", plans["new"], False)
    assert launch["dagster_run_url"] == f"{dagster_webserver.url}/runs/{launch['run_id']}"
    run = dagster_run(dagster_webserver.url, launch["run_id"])
    assert (run["jobName"], run["status"]) == ("apply_scaling_job", "QUEUED")
    assert yaml.safe_load(run["runConfigYaml"]) == expected
    tags = {t["key"]: t["value"] for t in run["tags"]}
    assert tags["shaper/launched_by"] == "control-api" and tags["shaper/plan_id"] == str(plans["new"])
    assert tags["shaper/target"] == "search-api"

    # The request's dry_run wins over the mode's; the mode's is the default.
    status, launch = api.call("POST", "/v1/plans/search-api/approve",
                              {"dry_run": True, "plan_id": plans["new"], "actor": "alice"})
    assert status == 202, launch
    config = yaml.safe_load(dagster_run(dagster_webserver.url, launch["run_id"])["runConfigYaml"])
    assert config["ops"]["apply_scaling_plans"]["config"] == {"dry_run": True, "targets": ["search-api"],
                                                              "actor": "control api (alice)"}
    api.call("PUT", "/v1/scaling/mode", {"dry_run": True, "paused": False})
    status, launch = api.call("POST", "/v1/plans/search-api/approve", {})
    assert status == 202 and launch["dry_run"] is True
    config = yaml.safe_load(dagster_run(dagster_webserver.url, launch["run_id"])["runConfigYaml"])
    assert config["ops"]["apply_scaling_plans"]["config"]["dry_run"] is True

    before = apply_runs(dagster_webserver.url)
    status, body = api.call("POST", "/v1/plans/search-api/approve", {"plan_id": plans["old"]})
    assert status == 409 and f"plan {plans['old']} is not the newest plan for search-api" in body["detail"]
    status, body = api.call("POST", "/v1/plans/checkout-api-asg/approve")
    assert status == 409 and "no plan for checkout-api-asg to approve" in body["detail"]
    status, body = api.call("POST", "/v1/plans/no-such-target/approve")
    assert status == 404 and "no scaling target 'no-such-target'" in body["detail"]
    for bad in ({"dry_run": "false"}, {"plan_id": 0}, {"plan_id": "x"}, {"other": True}, [1]):
        assert api.call("POST", "/v1/plans/search-api/approve", bad)[0] == 422, bad
    assert apply_runs(dagster_webserver.url) == before


def test_a_simulation_is_launched_as_a_run_and_the_kill_switch_cancels_it(api, home, dagster_webserver):
    from shaper_pipelines.lib.profile import load_profiles_file
    from shaper_pipelines.store.profile_store import ProfileStore

    with ProfileStore(sqlite_url(home)) as store:
        store.put_many(load_profiles_file(PROJECT / "profiles_data" / "profiles" / "gentle_rehearsal.yaml"))
    body = {"profile_ids": ["gentle-cpu-rehearsal", "gentle-cpu-rehearsal"], "intensity": 0.25,
            "window_minutes": 15, "http_target": "http://127.0.0.1:9/"}
    status, launch = api.call("POST", "/v1/simulations", body)
    assert status == 202, launch
    expected = {"ops": {"select_profiles": {"config": {
        "profile_ids": ["gentle-cpu-rehearsal"], "events": [], "window_minutes": 15.0, "intensity": 0.25,
        "http_target": "http://127.0.0.1:9/"}}}}
    assert launch["job"] == "load_simulation_job" and launch["run_config"] == expected
    run = dagster_run(dagster_webserver.url, launch["run_id"])
    assert (run["jobName"], run["status"]) == ("load_simulation_job", "QUEUED")
    assert yaml.safe_load(run["runConfigYaml"]) == expected

    status, body = api.call("POST", "/v1/simulations", {"profile_ids": ["gentle-cpu-rehearsal", "nope"],
                                                        "intensity": 0.5})
    assert status == 422 and body["detail"] == "profiles not in the profile store: nope"
    good = {"profile_ids": ["gentle-cpu-rehearsal"], "intensity": 0.5}
    for change in ({"intensity": 0}, {"intensity": 1.01}, {"intensity": -1}, {"intensity": None},
                   {"window_minutes": 0.5}, {"window_minutes": 1441}, {"profile_ids": []},
                   {"profile_ids": ["Bad Name"]}, {"profile_ids": "gentle-cpu-rehearsal"},
                   {"http_target": "ftp://x/"}, {"http_target": "not a url"}, {"events": ["x"]}):
        status, body = api.call("POST", "/v1/simulations", {**good, **change})
        assert status == 422, (change, body)
    status, body = api.call("POST", "/v1/simulations", {"intensity": 0.5})
    assert status == 422
    # A capacity rehearsal names a scaling target with a rehearsal section in scaling.yaml.
    status, rehearsal = api.call("POST", "/v1/simulations", {**good, "scaling_target": "search-api"})
    assert status == 202 and rehearsal["run_config"]["ops"]["select_profiles"]["config"]["scaling_target"] == "search-api"
    status, body = api.call("POST", "/v1/simulations", {**good, "scaling_target": "checkout-api-asg"})
    assert status == 422 and "no rehearsal section" in body["detail"]
    status, body = api.call("POST", "/v1/simulations", {**good, "scaling_target": "nope"})
    assert status == 404

    # The kill switch: queued and running simulation runs are cancelled before the agents are told.
    status, report = api.call("POST", "/v1/simulations/stop-all")
    assert status == 200, report
    assert report["confirmed"] is True and report["agents"] == []  # the local default; none started
    assert {**report["dagster"], "terminated": sorted(report["dagster"]["terminated"])} == {
        "configured": True, "terminated": sorted([launch["run_id"], rehearsal["run_id"]]), "error": ""}
    assert dagster_run(dagster_webserver.url, launch["run_id"])["status"] in ("CANCELING", "CANCELED")
    status, report = api.call("POST", "/v1/simulations/stop-all")
    assert status == 200 and report["dagster"]["terminated"] == []


def test_a_dagster_that_answers_with_an_error_is_a_502_with_its_message(tmp_path, dagster_webserver, plans, home):
    wrong = f"{dagster_webserver.url}/not-dagster"  # a webserver, but no GraphQL API under this prefix
    other = ApiProcess(shaper_env(home, SHAPER_API_TOKEN=TOKEN, SHAPER_DAGSTER_URL=wrong), tmp_path)
    try:
        status, body = other.call("POST", "/v1/plans/search-api/approve", {"dry_run": True})
        assert status == 502, body
        assert body["detail"].startswith(f"Dagster at {wrong}: ") and "unreachable" not in body["detail"]
    finally:
        other.stop()
