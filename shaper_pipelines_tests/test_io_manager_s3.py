"""Asset values across pods: with SHAPER_S3_BUCKET set, one OS process materialises an asset and
another, sharing no disk with it (its own DAGSTER_HOME, SHAPER_HOME and working directory), loads
that value through the project's io_manager from a real moto_server's S3 over HTTP - as two run
pods of the Kubernetes deployment would. Without the bucket, Dagster's filesystem default stays.

Each process loads its definitions afresh from its environment, the way a run pod does. The
writer is the real code location (``shaper_pipelines.definitions``); the reader a small one made of
the project's ``asset_storage`` (shaper_pipelines/defs/io_manager.py), the real
``business_calendar`` asset and a downstream probe that records what it loaded.
"""

from __future__ import annotations

import io
import json
import os
import pickle
import subprocess
import sys
import textwrap
from pathlib import Path

import dagster as dg
import pandas as pd
import pytest

from shaper_pipelines_tests.services.moto import start_moto

PROJECT = Path(__file__).resolve().parents[1]
DAGSTER = Path(sys.executable).parent / "dagster"
REGION = "us-east-1"

# A code location of its own for the two runs: the real calendar asset, a downstream asset that
# loads it through whatever ``io_manager`` the project binds, and the project's resources.
PROBE_DEFS = textwrap.dedent('''
    import hashlib
    import pickle

    import dagster as dg
    import pandas as pd

    from shaper_pipelines.defs import io_manager  # a module: its lazy definitions stay out of this file's
    from shaper_pipelines.defs.calendar.assets import business_calendar


    @dg.asset
    def calendar_probe(business_calendar: pd.DataFrame) -> dg.MaterializeResult:
        """What the downstream run received, for the test to compare with the bucket."""
        assert isinstance(business_calendar, pd.DataFrame), type(business_calendar)
        return dg.MaterializeResult(metadata={
            "rows": len(business_calendar),
            "columns": dg.MetadataValue.json(list(business_calendar.columns)),
            "digest": int(pd.util.hash_pandas_object(business_calendar, index=True).sum()),
        })


    defs = dg.Definitions.merge(io_manager.asset_storage(), dg.Definitions(assets=[business_calendar, calendar_probe]))
''')


def digest(frame: pd.DataFrame) -> int:
    return int(pd.util.hash_pandas_object(frame, index=True).sum())


@pytest.fixture(scope="module")
def s3_server():
    """A moto_server of this module's own (the session one lives in aws/conftest.py, out of reach)."""
    server = start_moto()
    yield server
    server.stop()


@pytest.fixture
def bucket(s3_server, request):
    import boto3

    name = f"shaper-{request.node.name.replace('_', '-')[:40]}".lower().rstrip("-")
    client = boto3.client("s3", region_name=REGION, endpoint_url=s3_server.url,
                          aws_access_key_id="testing", aws_secret_access_key="testing")
    client.create_bucket(Bucket=name)
    yield name, client
    for obj in client.list_objects_v2(Bucket=name).get("Contents", []):
        client.delete_object(Bucket=name, Key=obj["Key"])
    client.delete_bucket(Bucket=name)


class Pod:
    """One run pod: a working directory, DAGSTER_HOME and SHAPER_HOME of its own, and an
    environment holding only what the deployment would give it."""

    def __init__(self, root: Path, **shaper: str):
        self.root = root
        self.cwd = root / "work"
        self.dagster_home = root / "dagster_home"
        for d in (self.cwd, self.dagster_home):
            d.mkdir(parents=True)
        (self.cwd / "probe_defs.py").write_text(PROBE_DEFS)
        env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "SHAPER_", "DAGSTER_"))}
        env.update({
            "DAGSTER_HOME": str(self.dagster_home),
            "SHAPER_HOME": str(root / "shaper_home"),
            # Credentials through the standard chain, as IRSA or a secret would provide them; no
            # profile or instance metadata of this machine may leak in.
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_DEFAULT_REGION": REGION,
            "AWS_CONFIG_FILE": str(root / "no-aws-config"),
            "AWS_SHARED_CREDENTIALS_FILE": str(root / "no-aws-credentials"),
            "AWS_EC2_METADATA_DISABLED": "true",
        })
        env.update({f"SHAPER_{k.upper()}": v for k, v in shaper.items()})
        self.env = env

    def materialize(self, selection: str, *location: str) -> None:
        """``dagster asset materialize`` on ``location`` (default: the probe code location)."""
        location = location or ("-f", "probe_defs.py")
        result = subprocess.run([str(DAGSTER), "asset", "materialize", *location, "--select", selection],
                                cwd=self.cwd, env=self.env, capture_output=True, text=True, timeout=240)
        assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]

    def python(self, code: str) -> str:
        result = subprocess.run([sys.executable, "-c", code], cwd=self.cwd, env=self.env, capture_output=True,
                                text=True, timeout=240)
        assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
        return result.stdout

    def materialization(self, asset: str) -> dict:
        with dg.DagsterInstance.from_config(str(self.dagster_home)) as instance:
            event = instance.get_latest_materialization_event(dg.AssetKey(asset))
            assert event is not None, f"{asset} was not materialised in {self.dagster_home}"
            return {k: v.value for k, v in event.asset_materialization.metadata.items()}


def test_a_value_written_in_one_process_is_loaded_from_s3_in_another(s3_server, bucket, tmp_path):
    name, s3 = bucket
    settings = {"s3_bucket": name, "s3_prefix": "shaper/dev", "s3_endpoint_url": s3_server.url}
    writer, reader = Pod(tmp_path / "writer", **settings), Pod(tmp_path / "reader", **settings)

    # The writer is the real code location, as a run pod loads it.
    writer.materialize("business_calendar", "-m", "shaper_pipelines.definitions")
    written = writer.materialization("business_calendar")
    assert written["uri"] == f"s3://{name}/shaper/dev/business_calendar"
    assert not list(writer.dagster_home.rglob("business_calendar"))  # nothing on the pod's disk

    # The object is really in the bucket, under the prefix, and is the calendar the asset made.
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket=name, Prefix="shaper/dev/").get("Contents", [])]
    assert keys == ["shaper/dev/business_calendar"]
    stored = pickle.load(io.BytesIO(s3.get_object(Bucket=name, Key=keys[0])["Body"].read()))
    assert isinstance(stored, pd.DataFrame) and len(stored) == written["events"] > 0

    # A second process, sharing no disk with the first, runs only the downstream probe.
    reader.materialize("calendar_probe")
    loaded = reader.materialization("calendar_probe")
    assert loaded["rows"] == len(stored)
    assert loaded["columns"] == list(stored.columns)
    assert loaded["digest"] == digest(stored)
    with dg.DagsterInstance.from_config(str(reader.dagster_home)) as instance:
        # The reader's instance never saw business_calendar materialised: the value came from S3.
        assert instance.get_latest_materialization_event(dg.AssetKey("business_calendar")) is None
    assert not list(reader.dagster_home.rglob("business_calendar"))


def test_without_a_bucket_values_stay_on_the_local_disk(s3_server, bucket, tmp_path):
    name, s3 = bucket
    pod = Pod(tmp_path / "pod")  # no SHAPER_S3_* at all
    pod.materialize("business_calendar,calendar_probe")
    stored = pod.dagster_home / "storage" / "business_calendar"
    assert stored.exists(), "Dagster's default filesystem IO manager writes under $DAGSTER_HOME/storage"
    assert "uri" not in pod.materialization("business_calendar")
    assert pod.materialization("calendar_probe")["digest"] == digest(pickle.loads(stored.read_bytes()))
    assert s3.list_objects_v2(Bucket=name).get("KeyCount", 0) == 0


def test_asset_storage_binds_s3_only_with_a_bucket(monkeypatch):
    from dagster_aws.s3 import S3PickleIOManager, S3Resource

    from shaper_pipelines.defs.calendar.assets import business_calendar
    from shaper_pipelines.defs.io_manager import asset_storage

    for var in ("SHAPER_S3_BUCKET", "SHAPER_S3_PREFIX", "SHAPER_S3_ENDPOINT_URL", "AWS_REGION"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("AWS_DEFAULT_REGION", "eu-central-1")
    local = dg.Definitions.merge(asset_storage(), dg.Definitions(assets=[business_calendar]))
    assert "io_manager" not in (local.resources or {})
    # Exactly what Dagster binds when nobody binds anything: the filesystem IO manager.
    default = dg.Definitions(assets=[business_calendar]).resolve_implicit_global_asset_job_def()
    bound = local.resolve_implicit_global_asset_job_def().resource_defs["io_manager"]
    assert bound is default.resource_defs["io_manager"] and "filesystem" in bound.description

    monkeypatch.setenv("SHAPER_S3_BUCKET", " shaper-values ")
    monkeypatch.setenv("SHAPER_S3_ENDPOINT_URL", "http://minio.storage.svc:9000")
    resources = asset_storage().resources
    manager, client = resources["io_manager"], resources["s3"]
    assert isinstance(manager, S3PickleIOManager) and isinstance(client, S3Resource)
    assert (manager.s3_bucket, manager.s3_prefix) == ("shaper-values", "dagster")
    assert (client.endpoint_url, client.region_name) == ("http://minio.storage.svc:9000", "eu-central-1")
    # Credentials are the standard chain's, never configuration.
    assert client.aws_access_key_id is None and client.aws_secret_access_key is None
    assert client.profile_name is None

    monkeypatch.delenv("SHAPER_S3_ENDPOINT_URL")
    monkeypatch.setenv("SHAPER_S3_PREFIX", "/team/shaper/")
    resources = asset_storage().resources
    assert resources["s3"].endpoint_url is None and resources["io_manager"].s3_prefix == "team/shaper"


def test_the_code_location_binds_the_s3_io_manager(s3_server, tmp_path):
    """The real code location (every module under defs/) picks the project's io_manager up; run in
    a process of its own so that its environment is the one the definitions load under."""
    settings = {"s3_bucket": "shaper-values", "s3_endpoint_url": s3_server.url}
    code = textwrap.dedent('''
        import json
        import dagster as dg
        from shaper_pipelines.definitions import defs

        @dg.asset
        def nothing() -> None: ...

        # What Dagster binds to io_manager when nobody does: the filesystem IO manager.
        default = dg.Definitions(assets=[nothing]).resolve_implicit_global_asset_job_def().resource_defs["io_manager"]
        d = defs()
        resources = d.resources or {}
        manager = resources.get("io_manager")
        bound = d.resolve_implicit_global_asset_job_def().resource_defs["io_manager"]
        print(json.dumps({"io_manager": type(manager).__name__, "bucket": getattr(manager, "s3_bucket", None),
                          "endpoint": getattr(resources.get("s3"), "endpoint_url", None),
                          "default": bound is default}))
    ''')
    seen = json.loads(Pod(tmp_path / "s3", **settings).python(code).strip().splitlines()[-1])
    assert seen == {"io_manager": "S3PickleIOManager", "bucket": "shaper-values", "endpoint": s3_server.url,
                    "default": False}
    seen = json.loads(Pod(tmp_path / "local").python(code).strip().splitlines()[-1])
    assert seen == {"io_manager": "NoneType", "bucket": None, "endpoint": None, "default": True}
