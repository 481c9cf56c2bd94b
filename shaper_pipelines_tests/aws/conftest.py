"""AWS for the scaling tests: one real moto_server per session, emptied before each test, reached
over HTTP with dummy credentials. Nothing here can reach the real AWS: every client is built with
the server's endpoint_url, and the machine's AWS configuration is hidden."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pandas as pd
import pytest

from shaper_pipelines.lib.scaling_config import ScalingTarget, load_scaling_config
from shaper_pipelines_tests.services.aws_faults import FaultProxy
from shaper_pipelines_tests.services.moto import MotoServer, start_moto

PROJECT = Path(__file__).resolve().parents[2]
REGION = "us-east-1"


@pytest.fixture(scope="session")
def moto_server():
    server = start_moto()
    yield server
    server.stop()


@dataclass
class Aws:
    server: MotoServer

    @property
    def url(self) -> str:
        return self.server.url

    def client(self, service: str, **credentials):
        import boto3

        return boto3.client(service, region_name=REGION, endpoint_url=self.url, **credentials)

    def create_asg(self, name: str = "checkout-api-asg", *, min_size: int = 2, max_size: int = 10,
                   desired: int = 2) -> str:
        ec2 = self.client("ec2")
        template = f"{name}-template"
        ec2.create_launch_template(LaunchTemplateName=template,
                                   LaunchTemplateData={"ImageId": "ami-12c6146b", "InstanceType": "t3.micro"})
        self.client("autoscaling").create_auto_scaling_group(
            AutoScalingGroupName=name, LaunchTemplate={"LaunchTemplateName": template, "Version": "$Latest"},
            MinSize=min_size, MaxSize=max_size, DesiredCapacity=desired, AvailabilityZones=[f"{REGION}a"])
        return name

    def create_ecs_service(self, cluster: str = "prod", service: str = "search-api", *, min_capacity: int = 2,
                           max_capacity: int = 12, register: bool = True) -> str:
        ecs = self.client("ecs")
        ecs.create_cluster(clusterName=cluster)
        ecs.register_task_definition(family=service, containerDefinitions=[
            {"name": service, "image": "nginx:stable", "memory": 256}])
        ecs.create_service(cluster=cluster, serviceName=service, taskDefinition=service, desiredCount=min_capacity)
        resource = f"service/{cluster}/{service}"
        if register:
            self.client("application-autoscaling").register_scalable_target(
                ServiceNamespace="ecs", ResourceId=resource, ScalableDimension="ecs:service:DesiredCount",
                MinCapacity=min_capacity, MaxCapacity=max_capacity)
        return resource

    def create_user(self, name: str, allowed_actions: list[str]) -> dict:
        """An IAM user allowed exactly ``allowed_actions``; returns boto3 credential keywords."""
        iam = self.client("iam")
        iam.create_user(UserName=name)
        if allowed_actions:
            iam.put_user_policy(UserName=name, PolicyName=f"{name}-policy", PolicyDocument=json.dumps({
                "Version": "2012-10-17",
                "Statement": [{"Effect": "Allow", "Action": allowed_actions, "Resource": "*"}]}))
        key = iam.create_access_key(UserName=name)["AccessKey"]
        return {"aws_access_key_id": key["AccessKeyId"], "aws_secret_access_key": key["SecretAccessKey"]}

    def asg_scheduled(self, group: str) -> dict[str, dict]:
        actions = self.client("autoscaling").describe_scheduled_actions(
            AutoScalingGroupName=group)["ScheduledUpdateGroupActions"]
        return {a["ScheduledActionName"]: a for a in actions}

    def ecs_scheduled(self, resource: str) -> dict[str, dict]:
        actions = self.client("application-autoscaling").describe_scheduled_actions(
            ServiceNamespace="ecs", ResourceId=resource, ScalableDimension="ecs:service:DesiredCount")
        return {a["ScheduledActionName"]: a for a in actions["ScheduledActions"]}

    def add_owner_action(self, cfg: ScalingTarget) -> None:
        """The owner's own recurring scheduled action on ``cfg``'s target, which shaper must leave be."""
        if cfg.kind == "asg":
            self.client("autoscaling").put_scheduled_update_group_action(
                AutoScalingGroupName=cfg.resource, ScheduledActionName="nightly-batch", Recurrence="0 2 * * *",
                MinSize=4)
        else:
            self.client("application-autoscaling").put_scheduled_action(
                ServiceNamespace="ecs", ScalableDimension="ecs:service:DesiredCount", ResourceId=cfg.resource,
                ScheduledActionName="nightly-batch", Schedule="cron(0 2 * * ? *)",
                ScalableTargetAction={"MinCapacity": 4})

    def create(self, cfg: ScalingTarget, *, max_capacity: int = 10, register: bool = True) -> None:
        """The group or registered ECS service of ``cfg``: minimum 2, maximum ``max_capacity``."""
        if cfg.kind == "asg":
            self.create_asg(cfg.resource, min_size=2, max_size=max_capacity, desired=2)
        else:
            _, cluster, service = cfg.resource.split("/")
            self.create_ecs_service(cluster, service, min_capacity=2, max_capacity=max_capacity, register=register)

    def scheduled(self, cfg: ScalingTarget) -> dict[str, dict]:
        """Every scheduled action on ``cfg``'s group or scalable target, as AWS describes it."""
        return self.asg_scheduled(cfg.resource) if cfg.kind == "asg" else self.ecs_scheduled(cfg.resource)

    def state(self, cfg: ScalingTarget) -> dict[str, dict]:
        """What a rollback must give back: every scheduled action with all its fields, except the
        ones AWS makes up when an action is created (its ARN and creation time)."""
        return {name: {k: v for k, v in a.items() if k not in ("ScheduledActionARN", "CreationTime")}
                for name, a in self.scheduled(cfg).items()}

    def maximum(self, cfg: ScalingTarget) -> int:
        if cfg.kind == "asg":
            return self.client("autoscaling").describe_auto_scaling_groups(
                AutoScalingGroupNames=[cfg.resource])["AutoScalingGroups"][0]["MaxSize"]
        return self.client("application-autoscaling").describe_scalable_targets(
            ServiceNamespace="ecs", ResourceIds=[cfg.resource],
            ScalableDimension="ecs:service:DesiredCount")["ScalableTargets"][0]["MaxCapacity"]


@pytest.fixture
def aws(moto_server, monkeypatch, tmp_path):
    for name in list(os.environ):
        if name.startswith("AWS_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)
    # No profile, credentials file or instance metadata of this machine may leak in.
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-aws-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-aws-credentials"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    moto_server.reset()
    yield Aws(moto_server)
    moto_server.enforce_iam(False)


@pytest.fixture
def faults(moto_server):
    """A fault-injecting proxy in front of this test's moto_server (see services/aws_faults.py)."""
    proxy = FaultProxy(moto_server.url).start()
    yield proxy
    proxy.stop()


@dataclass
class Backoff:
    draws: list[float]
    delays: list[float]


@pytest.fixture
def backoff(monkeypatch) -> Backoff:
    """botocore's standard retry mode with its random function replaced by a known sequence, and the
    delays it computes recorded. It waits ``random() * min(base * 2**(i-1), 20 s)`` before attempt
    i+1, base 1 s after throttling (botocore/retries/standard.py, ExponentialBackoff.delay_amount):
    small draws keep the retried tests to milliseconds, and nothing is measured against a clock.
    Only clients made after this fixture are affected."""
    from botocore.retries import standard

    sequence = [0.02, 0.03, 0.01, 0.025]
    seen = Backoff([], [])

    def draw() -> float:
        value = sequence[len(seen.draws) % len(sequence)]
        seen.draws.append(value)
        return value

    original_init, original_delay = standard.ExponentialBackoff.__init__, standard.ExponentialBackoff.delay_amount

    def init(self, *args, **kwargs):
        original_init(self, *args, **{**kwargs, "random": draw})

    def delay_amount(self, context):
        seen.delays.append(original_delay(self, context))
        return seen.delays[-1]

    monkeypatch.setattr(standard.ExponentialBackoff, "__init__", init)
    monkeypatch.setattr(standard.ExponentialBackoff, "delay_amount", delay_amount)
    return seen


def no_wait():
    """Pacing that never waits: for tests that are not about pacing."""
    from shaper_pipelines.lib.aws_calls import Pacing

    return Pacing(calls_per_second=0)


@pytest.fixture
def scaling_store(store_url):
    from shaper_pipelines.store.scaling_store import ScalingStore

    s = ScalingStore(store_url)
    yield s
    s.close()


@pytest.fixture(scope="session")
def demo_targets() -> dict[str, ScalingTarget]:
    """The two targets of the shipped scaling.yaml, with the bounds and warmups these tests rely on
    pinned here, so that tuning the demo file does not change what the tests mean."""
    shipped = {t.kind: t for t in load_scaling_config(PROJECT / "profiles_data" / "scaling.yaml").targets}
    pinned = {"asg": {"warmup": 300.0, "min_capacity": 2, "max_capacity": 20},
              "ecs": {"warmup": 90.0, "min_capacity": 2, "max_capacity": 12}}
    return {kind: ScalingTarget.model_validate({**shipped[kind].model_dump(), **pinned[kind]}) for kind in pinned}


def next_hour(after: datetime | None = None, hours: int = 1) -> datetime:
    """A whole UTC hour ``hours`` after the one that contains ``after`` (default: now)."""
    after = after or datetime.now(timezone.utc)
    return after.replace(minute=0, second=0, microsecond=0) + timedelta(hours=hours)


def plan_frame(start: datetime, values: list[int], step: timedelta = timedelta(hours=1),
               reasons: list[str] | None = None) -> pd.DataFrame:
    times = [start + i * step for i in range(len(values))]
    return pd.DataFrame({
        "timestamp": pd.DatetimeIndex(times).tz_convert("UTC"),
        "desired_capacity": values,
        "reason": reasons or [f"forecast p90 needs {v}" for v in values],
    })
