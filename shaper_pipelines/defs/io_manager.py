"""Where asset values live between runs.

On Kubernetes every run is its own pod (deploy/helm/values.yaml), so a value pickled to one pod's
disk is out of reach of the next run: ``scaling_plan`` loads ``demand_forecast`` partitions that
other runs wrote. With ``SHAPER_S3_BUCKET`` set, ``io_manager`` is dagster-aws's
``S3PickleIOManager`` and every asset value is the object ``<bucket>/<SHAPER_S3_PREFIX>/<asset key>``
(``SHAPER_S3_ENDPOINT_URL`` for MinIO or another S3-compatible store). Unset, the key is left
out and Dagster's own default applies, as before: pickles under ``$DAGSTER_HOME/storage``.

Credentials are never configuration: boto3's standard chain finds them (AWS_* variables, IRSA's
web identity token in the pod, a profile). The bucket, prefix, endpoint and region are resource
config, so operators see them on the Resources page of the UI.
"""

from __future__ import annotations

import os

import dagster as dg
from dagster_aws.s3 import S3PickleIOManager, S3Resource

from shaper_pipelines.settings import get_settings


def aws_region() -> str | None:
    """The region boto3 would pick from the environment, made visible: AWS_REGION (which IRSA
    sets, botocore alone ignores) or AWS_DEFAULT_REGION; None leaves it to boto3's own chain."""
    return os.environ.get("AWS_REGION", "").strip() or os.environ.get("AWS_DEFAULT_REGION", "").strip() or None


def s3_resources(bucket: str, prefix: str, endpoint_url: str = "") -> dict[str, dg.ConfigurableResource]:
    """``io_manager`` pickling to ``s3://bucket/prefix/``, and the ``s3`` client resource it uses
    (bound on its own key too, so the UI shows the endpoint and region)."""
    s3 = S3Resource(endpoint_url=endpoint_url or None, region_name=aws_region())
    return {"s3": s3, "io_manager": S3PickleIOManager(s3_resource=s3, s3_bucket=bucket, s3_prefix=prefix.strip("/"))}


@dg.definitions
def asset_storage() -> dg.Definitions:
    # Read when the code location loads, so a restarted code server picks up changed variables.
    settings = get_settings()
    if not settings.s3_bucket:
        return dg.Definitions()
    return dg.Definitions(resources=s3_resources(settings.s3_bucket, settings.s3_prefix, settings.s3_endpoint_url))
