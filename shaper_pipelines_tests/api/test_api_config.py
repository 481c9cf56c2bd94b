"""Starting the API: no token, no start; `shaper api`; reads without Dagster (on SQLite and
PostgreSQL); launches without Dagster (503) and with an unreachable one (502)."""

from __future__ import annotations

import argparse
import subprocess
import sys

import pytest

from shaper_pipelines.cli import api as api_cli
from shaper_pipelines_tests.api.conftest import TOKEN, ApiProcess, shaper_env, sqlite_url
from shaper_pipelines_tests.api.test_api import plan_frame
from shaper_pipelines_tests.conftest import PROJECT
from shaper_pipelines_tests.services.postgres import free_port


def seed(url: str) -> int:
    from shaper_pipelines.lib.profile import load_profiles_file
    from shaper_pipelines.store.profile_store import ProfileStore
    from shaper_pipelines.store.scaling_store import ScalingStore

    with ProfileStore(url) as profiles:
        profiles.put_many(load_profiles_file(PROJECT / "profiles_data" / "profiles" / "gentle_rehearsal.yaml"))
    with ScalingStore(url) as store:
        return store.save_plan("search-api", plan_frame([3, 4]), produced_by="test", model="naive")


def serve(env: dict, tmp_path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "uvicorn", "shaper_pipelines.api.app:app", "--port",
                           str(free_port())], env=env, cwd=tmp_path, capture_output=True, text=True, timeout=60)


def test_the_api_refuses_to_start_without_a_proper_token(tmp_path, shaper_home):
    done = serve(shaper_env(shaper_home), tmp_path)
    assert done.returncode != 0
    assert "SHAPER_API_TOKEN is not set: the control API starts and stops load" in done.stderr
    done = serve(shaper_env(shaper_home, SHAPER_API_TOKEN="short"), tmp_path)
    assert done.returncode != 0 and "at least 16 characters" in done.stderr
    done = serve(shaper_env(shaper_home, SHAPER_API_TOKEN=TOKEN, SHAPER_DAGSTER_URL="ftp://dagster"), tmp_path)
    assert done.returncode != 0 and "SHAPER_DAGSTER_URL must look like http://host:port" in done.stderr


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="shaper")
    api_cli.add_parser(p.add_subparsers(dest="command", required=True))
    return p


def test_shaper_api_parses_its_options_and_refuses_without_a_token(shaper_home, monkeypatch):
    args = parser().parse_args(["api"])
    assert (args.host, args.port, args.ssl_certfile, args.func) == ("127.0.0.1", 8780, None, api_cli._api)
    args = parser().parse_args(["api", "--host", "0.0.0.0", "--port", "9000"])
    assert (args.host, args.port) == ("0.0.0.0", 9000)
    monkeypatch.delenv("SHAPER_API_TOKEN", raising=False)
    # A ValueError: `shaper` prints it as one line and exits 2.
    with pytest.raises(ValueError, match="SHAPER_API_TOKEN is not set"):
        args.func(args)
    monkeypatch.setenv("SHAPER_API_TOKEN", TOKEN)
    with pytest.raises(ValueError, match="go together"):
        args.func(parser().parse_args(["api", "--ssl-certfile", "cert.pem"]))


def test_shaper_api_serves(tmp_path, shaper_home):
    port = free_port()
    code = ("import argparse, sys\n"
            "from shaper_pipelines.cli import api\n"
            "p = argparse.ArgumentParser(); api.add_parser(p.add_subparsers())\n"
            "a = p.parse_args(sys.argv[1:]); sys.exit(a.func(a))\n")
    proc = subprocess.Popen([sys.executable, "-c", code, "api", "--port", str(port)], cwd=tmp_path,
                            env=shaper_env(shaper_home, SHAPER_API_TOKEN=TOKEN), stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    try:
        for line in proc.stdout:
            if "Uvicorn running on" in line:
                break
        else:
            raise AssertionError(f"`shaper api` exited with {proc.wait()}")
        from shaper_pipelines_tests.api.conftest import _request

        assert _request(f"http://127.0.0.1:{port}/v1/health")[0] == 200
        status, _headers, text = _request(f"http://127.0.0.1:{port}/v1/scaling/mode",
                                          headers={"Authorization": f"Bearer {TOKEN}"})
        assert status == 200 and '"dry_run":true' in text
    finally:
        proc.terminate()
        proc.wait(timeout=20)


def test_reads_work_without_dagster_and_launches_say_why_not(tmp_path, shaper_home, store_url):
    plan_id = seed(store_url)
    api = ApiProcess(shaper_env(shaper_home, SHAPER_API_TOKEN=TOKEN, SHAPER_DATABASE_URL=store_url), tmp_path)
    try:
        status, plan = api.call("GET", "/v1/plans/search-api")
        assert status == 200 and plan["header"]["plan_id"] == plan_id
        assert [r["desired_capacity"] for r in plan["rows"]] == [3, 4]
        status, mode = api.call("PUT", "/v1/scaling/mode", {"dry_run": False, "paused": False, "note": "live"})
        assert status == 200 and api.call("GET", "/v1/scaling/mode") == (200, mode)
        for path, body in (("/v1/plans/search-api/approve", None),
                           ("/v1/simulations", {"profile_ids": ["gentle-cpu-rehearsal"], "intensity": 0.5})):
            status, answer = api.call("POST", path, body)
            assert status == 503 and answer["detail"].startswith(
                "launching runs needs a Dagster webserver: set SHAPER_DAGSTER_URL"), path
        status, report = api.call("POST", "/v1/simulations/stop-all")
        assert status == 200 and report["dagster"] == {"configured": False, "terminated": [], "error": ""}
    finally:
        api.stop()


def test_an_unreachable_dagster_is_a_502_naming_it(tmp_path, shaper_home):
    seed(sqlite_url(shaper_home))
    nowhere = f"http://127.0.0.1:{free_port()}"
    api = ApiProcess(shaper_env(shaper_home, SHAPER_API_TOKEN=TOKEN, SHAPER_DAGSTER_URL=nowhere), tmp_path)
    try:
        for path, body in (("/v1/plans/search-api/approve", {"dry_run": True}),
                           ("/v1/simulations", {"profile_ids": ["gentle-cpu-rehearsal"], "intensity": 0.5})):
            status, answer = api.call("POST", path, body)
            assert status == 502 and answer["detail"] == f"Dagster at {nowhere} is unreachable: [Errno 111] Connection refused", answer
        status, report = api.call("POST", "/v1/simulations/stop-all")
        assert status == 502 and report["confirmed"] is False
        assert report["dagster"]["error"] == f"Dagster at {nowhere} is unreachable: [Errno 111] Connection refused"
    finally:
        api.stop()
