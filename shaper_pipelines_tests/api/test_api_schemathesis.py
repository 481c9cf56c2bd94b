"""Property-based requests from the API's own OpenAPI description (schemathesis): whatever the
input, valid (positive) or not (negative), the answer is never a server error. Launches go to a
real Dagster webserver (runs stay QUEUED), so the accepting paths are exercised, not only the
refusals.

Hypothesis drives each operation's strategy directly: schemathesis' lazy `from_fixture` schema
(needed because the server starts in a fixture) does not work with pytest 9.2."""

from __future__ import annotations

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error

from shaper_pipelines_tests.api.conftest import TOKEN, ApiProcess, shaper_env, sqlite_url
from shaper_pipelines_tests.api.test_api_config import seed

OPERATIONS = [
    ("GET", "/v1/health"),
    ("GET", "/v1/simulations"),
    ("POST", "/v1/simulations"),
    ("POST", "/v1/simulations/stop-all"),
    ("GET", "/v1/simulations/{run_key}"),
    ("PATCH", "/v1/simulations/{run_key}"),
    ("DELETE", "/v1/simulations/{run_key}"),
    ("GET", "/v1/plans"),
    ("GET", "/v1/plans/{target}"),
    ("POST", "/v1/plans/{target}/approve"),
    ("GET", "/v1/scaling/mode"),
    ("PUT", "/v1/scaling/mode"),
    ("GET", "/v1/actions"),
    ("GET", "/metrics"),
]
# Nothing in these can be made invalid (no parameters, no body): no negative cases exist.
NO_INPUT = {("GET", "/v1/health"), ("POST", "/v1/simulations/stop-all"), ("GET", "/v1/plans"),
            ("GET", "/v1/scaling/mode"), ("GET", "/metrics")}
CASES = [(m, p, mode) for m, p in OPERATIONS for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE)
         if mode is GenerationMode.POSITIVE or (m, p) not in NO_INPUT]
AUTH = {"Authorization": f"Bearer {TOKEN}"}
# Random names are never a configured target or a stored profile; mixing the seeded ones in makes
# the accepting paths (a plan read, a launched run) part of the fuzzing too.
SEEDED = {("GET", "/v1/plans/{target}"), ("POST", "/v1/plans/{target}/approve"), ("POST", "/v1/simulations")}


def _with_seeded_profile(case):
    if isinstance(case.body, dict):
        case.body = {**case.body, "profile_ids": ["gentle-cpu-rehearsal"]}
    return case


def strategy(operation, method: str, path: str, mode: GenerationMode):
    free = operation.as_strategy(generation_mode=mode)
    if mode is not GenerationMode.POSITIVE or (method, path) not in SEEDED:
        return free
    if "{target}" in path:
        return st.one_of(free, operation.as_strategy(generation_mode=mode, path_parameters={"target": "search-api"}))
    return st.one_of(free, free.map(_with_seeded_profile))


@pytest.fixture(scope="module")
def fuzzed_api(tmp_path_factory, dagster_webserver):
    home = tmp_path_factory.mktemp("api-fuzz") / "shaper_home"
    home.mkdir()
    seed(sqlite_url(home))  # a stored profile and a plan: some generated requests succeed
    (home / "export").mkdir()  # and an export for /metrics to serve (before one exists it is a 503)
    (home / "export" / "shaper.prom").write_text("# TYPE shaper_export_timestamp_seconds gauge\n"
                                                  "shaper_export_timestamp_seconds 1.7e9\n")
    server = ApiProcess(shaper_env(home, SHAPER_API_TOKEN=TOKEN, SHAPER_DAGSTER_URL=dagster_webserver.url),
                        home.parent)
    yield server
    server.stop()


@pytest.fixture(scope="module")
def api_schema(fuzzed_api):
    return schemathesis.openapi.from_url(f"{fuzzed_api.url}/openapi.json")


def test_the_fuzzed_operations_are_all_there_are(api_schema):
    found = {(op.ok().method.upper(), op.ok().path) for op in api_schema.get_all_operations()}
    assert found == set(OPERATIONS)


@pytest.mark.parametrize(("method", "path", "mode"), CASES, ids=[f"{m} {p} {mode}" for m, p, mode in CASES])
def test_no_request_gets_a_server_error(fuzzed_api, api_schema, method, path, mode):
    operation = api_schema[path][method]
    fuzzed_api.call("PUT", "/v1/scaling/mode", {"dry_run": True, "paused": False})  # fuzzing may have paused it
    statuses = []

    @given(case=strategy(operation, method, path, mode))
    @settings(max_examples=25, deadline=None, derandomize=True, database=None,
              suppress_health_check=list(HealthCheck))
    def check(case):
        statuses.append(case.call_and_validate(headers=AUTH, checks=[not_a_server_error], timeout=60).status_code)

    check()
    if mode is GenerationMode.POSITIVE and (method, path) in SEEDED:
        assert any(200 <= s < 300 for s in statuses), statuses


@pytest.mark.parametrize(("method", "path"), OPERATIONS, ids=[f"{m} {p}" for m, p in OPERATIONS])
def test_a_wrong_token_is_refused_whatever_the_request(api_schema, method, path):
    operation = api_schema[path][method]

    @given(case=operation.as_strategy(generation_mode=GenerationMode.POSITIVE))
    @settings(max_examples=5, deadline=None, derandomize=True, database=None,
              suppress_health_check=list(HealthCheck))
    def check(case):
        response = case.call(headers={"Authorization": "Bearer not-the-token-at-all"}, timeout=60)
        expected = 200 if path in ("/v1/health", "/metrics") else 401  # the two open paths
        assert response.status_code == expected, (case.method, case.formatted_path, response.text)

    check()
