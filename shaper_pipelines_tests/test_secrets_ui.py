"""The agent token is bound by variable name: the Dagster UI (its GraphQL API), the webserver's and
code server's output and the asset metadata show SHAPER_AGENT_TOKEN, never the token. An unset
variable leaves the fleet's embedded default instead of failing."""

from __future__ import annotations

import json

import dagster as dg
import pytest

from shaper_pipelines_tests.api.conftest import DagsterWebserver, graphql, shaper_env

TOKEN = "tok-7c1e5b2f-never-shown-9d4a"
AGENT = "http://127.0.0.1:9/"  # nothing listens: the test needs the binding, not the agent


def _fleet(monkeypatch, **env: str | None):
    from shaper_pipelines.defs.resources import resources
    from shaper_pipelines.settings import get_settings

    for name in ("SHAPER_AGENTS", "SHAPER_AGENT_TOKEN"):
        value = env.get(name)
        if value is None:
            monkeypatch.delenv(name, raising=False)
        else:
            monkeypatch.setenv(name, value)
    get_settings.cache_clear()
    return resources().resources["fleet"]


def test_token_is_bound_by_name_and_resolved_when_the_resource_starts(monkeypatch):
    fleet = _fleet(monkeypatch, SHAPER_AGENTS=AGENT, SHAPER_AGENT_TOKEN=TOKEN)
    assert isinstance(fleet.token, dg.EnvVar) and fleet.token.env_var_name == "SHAPER_AGENT_TOKEN"
    with dg.build_resources({"fleet": fleet}) as started:
        assert started.fleet.token == TOKEN
        assert [c.url.rstrip("/") for c in started.fleet.clients()] == [AGENT.rstrip("/")]


def test_unset_token_keeps_the_default_and_fails_only_when_agents_need_it(monkeypatch):
    fleet = _fleet(monkeypatch, SHAPER_AGENTS=AGENT)
    assert fleet.token == ""
    with dg.build_resources({"fleet": fleet}) as started:  # starts: no EnvVar to miss
        with pytest.raises(ValueError, match="SHAPER_AGENT_TOKEN must be set"):
            started.fleet.clients()


def test_no_agents_no_token_is_the_embedded_default(monkeypatch):
    fleet = _fleet(monkeypatch)
    assert (fleet.agents, fleet.token) == ([], "")
    with dg.build_resources({"fleet": fleet}) as started:
        assert started.fleet.slots() == {"cpu": 1, "memory": 1, "disk_io": 1}


_REPOSITORIES = "{ repositoriesOrError { ... on RepositoryConnection { nodes { name location { name } } } } }"

_RESOURCES = """
query Resources($repo: RepositorySelector!) {
  allTopLevelResourceDetailsOrError(repositorySelector: $repo) {
    __typename
    ... on ResourceDetailsList { results {
      name description resourceType
      configFields { name description isRequired defaultValueAsJson configTypeKey }
      configuredValues { key value type }
      nestedResources { name type } parentResources { name type }
    } }
    ... on PythonError { message }
  }
}
"""

_RESOURCE = """
query Resource($resource: ResourceSelector!) {
  topLevelResourceDetailsOrError(resourceSelector: $resource) {
    __typename
    ... on ResourceDetails { name configuredValues { key value type }
                             configFields { name defaultValueAsJson } }
    ... on PythonError { message }
  }
}
"""

_ENV_VARS = """
query EnvVars($repo: RepositorySelector!) {
  utilizedEnvVarsOrError(repositorySelector: $repo) {
    __typename
    ... on EnvVarWithConsumersList { results { envVarName envVarConsumers { type name } } }
  }
}
"""

_METADATA = """
{ assetNodes {
    assetKey { path } description
    metadataEntries {
      label description __typename
      ... on TextMetadataEntry { text }
      ... on JsonMetadataEntry { jsonString }
      ... on UrlMetadataEntry { url }
      ... on PathMetadataEntry { path }
      ... on MarkdownMetadataEntry { mdStr }
    }
} }
"""

# What the launchpad scaffolds for a job that uses the fleet (resources included).
_LAUNCHPAD = """
query Schema($selector: PipelineSelector!) {
  runConfigSchemaOrError(selector: $selector) {
    __typename
    ... on RunConfigSchema { rootDefaultYaml }
    ... on PythonError { message }
  }
}
"""


@pytest.fixture(scope="module")
def webserver_with_token(tmp_path_factory):
    home = tmp_path_factory.mktemp("secrets") / "shaper_home"
    server = DagsterWebserver(shaper_env(home, SHAPER_AGENTS=AGENT, SHAPER_AGENT_TOKEN=TOKEN), home.parent)
    yield server
    server.stop()


def test_the_ui_shows_the_variable_never_the_token(webserver_with_token):
    url = webserver_with_token.url
    repos = graphql(url, _REPOSITORIES)["repositoriesOrError"]["nodes"]
    repo = next(r for r in repos if r["location"]["name"] == "shaper_pipelines")
    selector = {"repositoryLocationName": "shaper_pipelines", "repositoryName": repo["name"]}
    answers = {
        "resources": graphql(url, _RESOURCES, {"repo": selector}),
        "fleet": graphql(url, _RESOURCE, {"resource": {**selector, "resourceName": "fleet"}}),
        "env vars": graphql(url, _ENV_VARS, {"repo": selector}),
        "metadata": graphql(url, _METADATA),
        "launchpad": graphql(url, _LAUNCHPAD, {"selector": {**selector, "pipelineName": "load_simulation_job"}}),
    }
    for what, answer in answers.items():
        assert TOKEN not in json.dumps(answer), f"the token is in the {what} answer"

    fleet = answers["fleet"]["topLevelResourceDetailsOrError"]
    assert fleet["__typename"] == "ResourceDetails", fleet
    configured = {v["key"]: v for v in fleet["configuredValues"]}
    # The binding is there (the variable was set and read), shown by its name.
    assert configured["token"] == {"key": "token", "value": "SHAPER_AGENT_TOKEN", "type": "ENV_VAR"}
    assert AGENT in configured["agents"]["value"]
    consumers = {e["envVarName"]: {c["name"] for c in e["envVarConsumers"]}
                 for e in answers["env vars"]["utilizedEnvVarsOrError"]["results"]}
    assert "fleet" in consumers.get("SHAPER_AGENT_TOKEN", set()), consumers
    launchpad = answers["launchpad"]["runConfigSchemaOrError"]
    assert launchpad["__typename"] == "RunConfigSchema", launchpad

    # Nor in anything the webserver or its code server printed.
    log = webserver_with_token.log.read_text(errors="replace")
    assert TOKEN not in log


_INSTIGATORS = """
query Instigators($repo: RepositorySelector!) {
  sensorsOrError(repositorySelector: $repo) {
    __typename ... on Sensors { results { name description sensorState { status } } }
  }
  schedulesOrError(repositorySelector: $repo) {
    __typename ... on Schedules { results { name description scheduleState { status } } }
  }
}
"""


def test_a_fresh_ui_runs_the_loop_and_keeps_what_makes_load_stopped(webserver_with_token):
    """What an operator sees in a fresh `shaper ui`: the loop's schedule and sensors running, the
    ones that make real load stopped, each saying why in its description."""
    url = webserver_with_token.url
    repo = graphql(url, _REPOSITORIES)["repositoriesOrError"]["nodes"][0]
    data = graphql(url, _INSTIGATORS, {"repo": {"repositoryName": repo["name"],
                                                "repositoryLocationName": repo["location"]["name"]}})
    sensors = {s["name"]: s for s in data["sensorsOrError"]["results"]}
    schedules = {s["name"]: s for s in data["schedulesOrError"]["results"]}
    status = {**{n: s["sensorState"]["status"] for n, s in sensors.items()},
              **{n: s["scheduleState"]["status"] for n, s in schedules.items()}}
    for name in ("history_job_schedule", "shaper_automation", "plan_apply_sensor", "degraded_accuracy_sensor",
                 "agent_sensor", "run_failure_notice", "critical_plan_notice"):
        assert status[name] == "RUNNING", name
    for name in ("load_simulation_job_schedule", "event_feed_sensor", "calendar_rehearsal_sensor"):
        assert status[name] == "STOPPED", name
        described = (sensors.get(name) or schedules.get(name))["description"]
        assert "real load" in described, (name, described)
    assert "dry run" in sensors["plan_apply_sensor"]["description"]
