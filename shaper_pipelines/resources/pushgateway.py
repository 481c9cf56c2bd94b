"""Where shaper's exported predictions go: a Prometheus Pushgateway, or a textfile for
node_exporter's textfile collector when none is set (the embedded default)."""

from __future__ import annotations

from dataclasses import dataclass

import dagster as dg

URL_VAR = "SHAPER_PUSHGATEWAY_URL"


@dataclass(frozen=True)
class Published:
    kind: str  # "pushgateway" or "textfile"
    where: str  # the group's URL, or the file's path


class PushgatewayResource(dg.ConfigurableResource):
    """``url`` empty means the embedded default: the exposition is written atomically to
    ``textfile_path`` (default ``$SHAPER_HOME/export/shaper.prom``), where node_exporter's textfile
    collector or a file-serving scrape can pick it up. Set SHAPER_PUSHGATEWAY_URL (read in
    defs/resources.py) to push to a Pushgateway instead; each push replaces the job's group. TLS
    and authentication come from the SHAPER_PUSHGATEWAY_* settings, read when it publishes (so
    secrets never sit in the resource's config the UI shows)."""

    url: str = ""
    job: str = "shaper"
    timeout_seconds: float = 10.0
    retries: int = 3
    backoff_seconds: float = 0.5
    textfile_path: str = ""

    @classmethod
    def from_env(cls) -> "PushgatewayResource":
        from shaper_pipelines.settings import get_settings

        return cls(url=get_settings().pushgateway_url)

    def textfile(self):
        from pathlib import Path

        from shaper_pipelines.settings import shaper_home

        return Path(self.textfile_path) if self.textfile_path else shaper_home() / "export" / "shaper.prom"

    def publish(self, metrics) -> Published:
        """Push ``metrics`` (a prometheus_client registry, or lib.export samples) with
        ``push_to_gateway``, verifying TLS and authenticating as the ``SHAPER_PUSHGATEWAY_*``
        settings say (CA_BUNDLE, INSECURE_SKIP_VERIFY, BEARER_TOKEN or USERNAME/PASSWORD); or,
        without a URL, write them with ``write_to_textfile``."""
        from shaper_pipelines.lib.export import push, write_textfile
        from shaper_pipelines.lib.prometheus import HttpAccess

        if self.url:
            where = push(self.url, self.job, metrics, self.timeout_seconds, retries=self.retries,
                         backoff_seconds=self.backoff_seconds, access=HttpAccess.from_settings("pushgateway"))
            return Published("pushgateway", where)
        path = self.textfile()
        write_textfile(path, metrics)
        return Published("textfile", str(path))
