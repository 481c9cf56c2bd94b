"""Launching and stopping Dagster runs through a running webserver's GraphQL API, so that every run
the control API starts is an ordinary run: queued by the instance's run coordinator, visible in
the UI, with its config and tags."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping
from urllib.parse import urlsplit

LOCATION = "shaper_pipelines"  # workspace.yaml's location_name
# A code location loaded from a module's @dg.definitions has one repository under this name.
REPOSITORY = "__repository__"
ACTIVE_STATUSES = ["QUEUED", "NOT_STARTED", "STARTING", "STARTED"]

_ACTIVE_RUNS = """
query ActiveRuns($filter: RunsFilter) {
  runsOrError(filter: $filter) {
    __typename
    ... on Runs { results { runId status } }
    ... on PythonError { message }
    ... on InvalidPipelineRunsFilterError { message }
  }
}
"""


class DagsterError(RuntimeError):
    """Dagster refused or could not be reached; the message says which and why."""


@dataclass(frozen=True)
class DagsterTarget:
    url: str  # the webserver's base URL, e.g. http://127.0.0.1:3000
    location: str = LOCATION
    repository: str = REPOSITORY
    timeout: int = 30

    @classmethod
    def parse(cls, url: str, **kwargs) -> "DagsterTarget":
        parts = urlsplit(url.strip())
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"SHAPER_DAGSTER_URL must look like http://host:port[/prefix], got {url!r}")
        try:
            parts.port
        except ValueError:
            raise ValueError(f"SHAPER_DAGSTER_URL has an invalid port: {url!r}") from None
        return cls(url=url.strip().rstrip("/"), **kwargs)


class DagsterLauncher:
    def __init__(self, target: DagsterTarget):
        from dagster_graphql import DagsterGraphQLClient

        self.target = target
        parts = urlsplit(target.url)
        self._client = DagsterGraphQLClient(parts.hostname, port_number=parts.port,
                                            use_https=parts.scheme == "https", timeout=target.timeout,
                                            path_prefix=parts.path.rstrip("/"))

    def run_url(self, run_id: str) -> str:
        return f"{self.target.url}/runs/{run_id}"

    def launch(self, job: str, run_config: Mapping[str, Any], tags: Mapping[str, str]) -> str:
        """Submit a run of ``job`` (queued under a QueuedRunCoordinator) and return its id."""
        with _translated(self.target.url):
            return self._client.submit_job_execution(job, repository_location_name=self.target.location,
                                                     repository_name=self.target.repository,
                                                     run_config=dict(run_config), tags=dict(tags))

    def active_runs(self, job: str) -> list[str]:
        """Ids of the runs of ``job`` that are queued, starting or running."""
        variables = {"filter": {"pipelineName": job, "statuses": ACTIVE_STATUSES}}
        with _translated(self.target.url):
            result = self._client._execute(_ACTIVE_RUNS, variables)["runsOrError"]
        if result["__typename"] != "Runs":
            raise DagsterError(f"Dagster at {self.target.url} could not list runs: "
                               f"{result['__typename']}: {result.get('message', '')}")
        return [r["runId"] for r in result["results"]]

    def terminate(self, run_ids: list[str]) -> None:
        if run_ids:
            with _translated(self.target.url):
                self._client.terminate_runs(run_ids)


class _translated:
    """DagsterGraphQLClientError (and anything the GraphQL client lets through) -> DagsterError
    with a message a person can act on, instead of the query text the client puts in it."""

    def __init__(self, url: str):
        self.url = url

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        if exc is None or isinstance(exc, DagsterError):
            return False
        from dagster_graphql import DagsterGraphQLClientError

        unreachable = _unreachable(exc)
        if unreachable is not None:
            raise DagsterError(f"Dagster at {self.url} is unreachable: {unreachable}") from None
        if isinstance(exc, DagsterGraphQLClientError):
            raise DagsterError(f"Dagster at {self.url}: {describe(exc)}") from None
        if isinstance(exc, Exception):
            raise DagsterError(f"Dagster at {self.url}: {type(exc).__name__}: {exc}") from None
        return False


def describe(exc: Exception) -> str:
    args = list(exc.args)
    if len(args) >= 2:
        kind, detail = args[0], args[1]
        if isinstance(detail, list):
            detail = "; ".join(str(d.get("message", d)) if isinstance(d, dict) else str(d) for d in detail)
        return f"{kind}: {detail}"
    cause = exc.__cause__
    first = str(args[0]).splitlines()[0].strip() if args else type(exc).__name__
    if first.startswith("Exception occured during execution of query"):
        first = "the GraphQL request failed"
    return f"{first} ({type(cause).__name__}: {cause})" if cause is not None else first


def _unreachable(exc: BaseException) -> str | None:
    """Why the webserver could not be reached (say "[Errno 111] Connection refused"), or None if
    it was reached. The GraphQL client wraps the socket error in two or three layers."""
    import re

    chain, seen = [], set()
    e: BaseException | None = exc
    while e is not None and id(e) not in seen:
        seen.add(id(e))
        chain.append(e)
        e = e.__cause__ or e.__context__
    if not any(_is_connection_failure(e) for e in chain):
        return None
    text = " ".join(str(e) for e in chain)
    errno = re.search(r"\[Errno -?\d+\] [^'\")\]]+", text)
    if errno:
        return errno.group(0).strip()
    timeout = next((e for e in chain if "Timeout" in type(e).__name__), None)
    return f"no answer ({type(timeout).__name__})" if timeout else type(chain[-1]).__name__


def _is_connection_failure(e: BaseException) -> bool:
    name = type(e).__name__
    return isinstance(e, (ConnectionError, TimeoutError)) or "Connection" in name or "Timeout" in name
