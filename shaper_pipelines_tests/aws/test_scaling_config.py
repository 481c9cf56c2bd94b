"""scaling.yaml: the shipped file loads, and mistakes are reported by file and field."""

from __future__ import annotations

import pytest
import yaml

from shaper_pipelines.lib.metrics_config import load_metrics_config
from shaper_pipelines.lib.scaling_config import load_scaling_config
from shaper_pipelines_tests.aws.conftest import PROJECT

SCALING = PROJECT / "profiles_data" / "scaling.yaml"
METRICS = PROJECT / "profiles_data" / "metrics.yaml"


def test_the_shipped_configuration_loads_and_matches_the_history():
    config = load_scaling_config(SCALING, load_metrics_config(METRICS))
    asg, ecs = config.target("checkout-api-asg"), config.target("search-api")
    assert (asg.kind, asg.resource, asg.history.target, asg.history.metric) == (
        "asg", "checkout-api-asg", "checkout-api", "requests")
    assert (ecs.kind, ecs.resource, ecs.history.target) == ("ecs", "service/prod/search-api", "search-api")
    for t in (asg, ecs):
        assert t.region == "us-east-1" and 0 < t.target_utilization <= 1 and t.warmup > 0
        assert 1 <= t.min_capacity <= t.max_capacity
        assert t.capacity_per_instance is None or t.capacity_per_instance > 0  # None: from the capacity model
    with pytest.raises(LookupError, match="configured: checkout-api-asg, search-api"):
        config.target("nope")


def write(tmp_path, **changes):
    raw = yaml.safe_load(SCALING.read_text())
    raw["targets"][1].update(changes)
    path = tmp_path / "scaling.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


@pytest.mark.parametrize("changes, expected", [
    ({"warmup": "soon"}, r"targets\[1\] \(search-api\)\.warmup: 'soon' is not a duration"),
    ({"min_capacity": 5, "max_capacity": 3}, r"targets\[1\] \(search-api\): min_capacity 5 is above max_capacity 3"),
    ({"min_capacity": 0}, r"targets\[1\] \(search-api\)\.min_capacity: Input should be greater than or equal to 1"),
    ({"resource": "search-api"}, r"an ecs target's resource is service/<cluster>/<service>"),
    ({"kind": "lambda"}, r"targets\[1\] \(search-api\)\.kind: Input should be 'asg' or 'ecs'"),
    ({"target_utilization": 1.5}, r"\.target_utilization: Input should be less than or equal to 1"),
    ({"capacity_per_instance": 0}, r"\.capacity_per_instance: Input should be greater than 0"),
    ({"region": "mars"}, r"\.region: 'mars' is not an AWS region"),
    ({"replicas": 3}, r"\.replicas: Extra inputs are not permitted"),
    ({"max_actions": 201}, r"targets\[1\] \(search-api\): max_actions 201 is above AWS's hard quota of 200 scheduled "
                           r"actions per Application Auto Scaling scalable target, .*set max_actions to at most 200"),
    ({"max_actions": 0}, r"\.max_actions: Input should be greater than or equal to 1"),
    ({"name": "checkout-api-asg"}, r"two targets are named 'checkout-api-asg'"),
    # The rehearsal section: the objective, how the service is watched, where it is.
    ({"rehearsal": {"objective": {"quantile": 0.9, "latency": "100ms"}}},
     r"\.rehearsal\.objective\.quantile: Input should be 0\.5, 0\.95 or 0\.99"),
    ({"rehearsal": {"objective": {"latency": "0ms"}}}, r"\.rehearsal\.objective\.latency: .*above 0"),
    ({"rehearsal": {"objective": {"latency": "soon"}}}, r"\.rehearsal\.objective\.latency: 'soon' is not a duration"),
    ({"rehearsal": {"objective": {"latency": "100ms"}, "watch": "prometheus"}},
     r"\.rehearsal: watch: prometheus needs a prometheus: section"),
    ({"rehearsal": {"objective": {"latency": "100ms"}, "url": "ftp://x/"}}, r"\.rehearsal\.url: .*http\(s\) URL"),
    ({"rehearsal": {"objective": {"latency": "100ms"}, "scrape": {"busy_seconds": "not a metric"}}},
     r"\.rehearsal\.scrape\.busy_seconds: String should match pattern"),
    ({"rehearsal": {"objective": {"latency": "100ms"}, "arrivals": "bursty"}},
     r"\.rehearsal\.arrivals: Input should be 'poisson' or 'even'"),
])
def test_mistakes_name_the_file_and_the_field(tmp_path, changes, expected):
    path = write(tmp_path, **changes)
    with pytest.raises(ValueError, match=expected) as caught:
        load_scaling_config(path)
    assert str(caught.value).startswith(f"{path}: ")


def test_max_actions_defaults_to_100_and_stays_within_each_kinds_aws_quota(tmp_path):
    from shaper_pipelines.lib.scaling_config import SCHEDULED_ACTION_QUOTA

    assert SCHEDULED_ACTION_QUOTA == {"asg": 125, "ecs": 200}
    config = load_scaling_config(SCALING)
    assert [t.max_actions for t in config.targets] == [100, 100]
    assert load_scaling_config(write(tmp_path, max_actions=200)).target("search-api").max_actions == 200  # ecs
    raw = yaml.safe_load(SCALING.read_text())
    raw["targets"][0]["max_actions"] = 126  # the asg target
    path = tmp_path / "asg.yaml"
    path.write_text(yaml.safe_dump(raw))
    with pytest.raises(ValueError, match=r"targets\[0\] \(checkout-api-asg\): max_actions 126 is above AWS's hard "
                                         r"quota of 125 scheduled actions per Auto Scaling group"):
        load_scaling_config(path)


def test_a_history_series_that_is_not_collected_is_refused(tmp_path):
    path = write(tmp_path, history={"target": "search-api", "metric": "memory"})
    assert load_scaling_config(path).target("search-api").history.metric == "memory"
    with pytest.raises(ValueError, match=r"search-api\.history: search-api/memory is not a series"):
        load_scaling_config(path, load_metrics_config(METRICS))


def test_two_targets_on_one_group_are_refused(tmp_path):
    raw = yaml.safe_load(SCALING.read_text())
    raw["targets"].append({**raw["targets"][0], "name": "checkout-again"})
    path = tmp_path / "scaling.yaml"
    path.write_text(yaml.safe_dump(raw))
    with pytest.raises(ValueError, match="'checkout-api-asg' and 'checkout-again' both scale asg"):
        load_scaling_config(path)


def test_unreadable_files_are_reported_with_their_path(tmp_path):
    with pytest.raises(ValueError, match="missing.yaml"):
        load_scaling_config(tmp_path / "missing.yaml")
    broken = tmp_path / "broken.yaml"
    broken.write_text("targets: [\n")
    with pytest.raises(ValueError, match="broken.yaml"):
        load_scaling_config(broken)
