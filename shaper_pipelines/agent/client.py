"""Talking to load agents over their HTTP API (the standard library only: the controller may run
inside a Dagster run worker where nothing else should be assumed)."""

from __future__ import annotations

import json
import urllib.error
import urllib.request


class AgentError(RuntimeError):
    def __init__(self, message: str, status: int | None = None):
        super().__init__(message)
        self.status = status


class AgentUnreachable(AgentError):
    pass


class AgentClient:
    def __init__(self, url: str, token: str, timeout: float = 10.0):
        self.url, self.token, self.timeout = url.rstrip("/"), token, timeout

    def _call(self, method: str, path: str, body: dict | None = None):
        req = urllib.request.Request(f"{self.url}{path}", method=method,
                                     data=None if body is None else json.dumps(body).encode(),
                                     headers={"Authorization": f"Bearer {self.token}",
                                              "Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=self.timeout) as response:
                text = response.read().decode()
                return json.loads(text) if response.headers.get_content_type() == "application/json" else text
        except urllib.error.HTTPError as exc:
            try:
                message = json.loads(exc.read().decode()).get("error", "")
            except (ValueError, AttributeError):
                message = exc.reason
            raise AgentError(f"agent {self.url} refused {method} {path}: {exc.code} {message}", exc.code) from None
        except (urllib.error.URLError, OSError) as exc:
            raise AgentUnreachable(f"agent {self.url} is unreachable: {getattr(exc, 'reason', exc)}") from None

    def start(self, profile: dict, intensity: float = 1.0, target_resource: str = "localhost", *,
              stop_when: dict | None = None, monitor: dict | None = None, arrivals: str | None = None) -> dict:
        """Start a run. A network_io run may take ``monitor`` (the target's own /metrics, read every
        second) and ``stop_when`` (an objective that ends the run once broken); see
        ``shaper_pipelines.agent.watch`` for both, and ``arrivals`` ("even" or "poisson", see the
        locustfile)."""
        body = {"profile": profile, "intensity": intensity, "target_resource": target_resource}
        if stop_when is not None:
            body["stop_when"] = stop_when
        if arrivals is not None:
            body["arrivals"] = arrivals
        if monitor is not None:
            body["monitor"] = monitor
        return self._call("POST", "/runs", body)

    def get(self, run_id: str) -> dict:
        return self._call("GET", f"/runs/{run_id}")

    def runs(self) -> list[dict]:
        return self._call("GET", "/runs")

    def adjust(self, run_id: str, intensity: float) -> dict:
        return self._call("PATCH", f"/runs/{run_id}", {"intensity": intensity})

    def stop(self, run_id: str) -> dict:
        return self._call("DELETE", f"/runs/{run_id}")

    def stop_all(self) -> dict:
        return self._call("POST", "/stop-all")

    def metrics(self) -> str:
        return self._call("GET", "/metrics")

    def heartbeat(self) -> dict:
        """Tell the agent the controller is still there: renews its dead-man timer, which reads
        (``get``, ``runs``, ``metrics``) do not. A controller that keeps a run going for longer than
        the agent's dead-man calls this more often than that."""
        return self._call("POST", "/heartbeat")

    def shutdown(self) -> dict:
        """Stop all load and end the agent process."""
        return self._call("POST", "/shutdown")
