"""A Prometheus pointed at shaper: the control API serves the newest export at /metrics, and a real
Prometheus scrapes it."""

from __future__ import annotations

import time
import urllib.error
import urllib.request

from shaper_pipelines_tests.api.conftest import ApiProcess, shaper_env

EXPORT = """# HELP shaper_planned_capacity Floor of warm instances the scaling plan holds now.
# TYPE shaper_planned_capacity gauge
shaper_planned_capacity{target="checkout-api-asg",group="checkout-api-asg",kind="asg"} 7
"""


def test_prometheus_scrapes_the_export_from_the_api(tmp_path):
    from shaper_pipelines_tests.services.prometheus import start_prometheus

    home = tmp_path / "home"
    api = ApiProcess(shaper_env(home, SHAPER_API_TOKEN="t" * 32), tmp_path)
    try:
        try:
            urllib.request.urlopen(f"{api.url}/metrics", timeout=5)
            raise AssertionError("expected 503 before anything was exported")
        except urllib.error.HTTPError as exc:
            assert exc.code == 503 and b"prometheus_export" in exc.read()
        (home / "export").mkdir(parents=True)
        (home / "export" / "shaper.prom").write_text(EXPORT)
        prometheus = start_prometheus(scrape_interval="1s", scrape_configs=[{
            "job_name": "shaper", "scrape_interval": "1s", "scrape_timeout": "1s",
            "static_configs": [{"targets": [api.url.removeprefix("http://")]}]}])
        try:
            deadline = time.monotonic() + 20
            while not (result := prometheus.query('shaper_planned_capacity{job="shaper"}')):
                assert time.monotonic() < deadline, "Prometheus never scraped the export"
                time.sleep(0.3)
            assert result[0]["metric"]["group"] == "checkout-api-asg" and result[0]["value"][1] == "7"
        finally:
            prometheus.stop()
    finally:
        api.stop()
