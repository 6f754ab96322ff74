"""The Serve config file and the pieces of the application that need no running Serve."""

from __future__ import annotations

import copy

import pytest
import yaml
from ray.serve._private.common import DeploymentID, ReplicaID
from ray.serve.config import AutoscalingContext
from ray.serve.deployment import Application
from ray.serve.schema import ServeDeploySchema

from workers.serve.app import (
    BATCHED_DEPLOYMENTS,
    DEFAULT_CONFIG,
    build_app,
    check_deploy_config,
    load_deploy_config,
)
from workers.serve.consumer import BacklogPolicy


def raw_config() -> dict:
    return yaml.safe_load(DEFAULT_CONFIG.read_text())


def test_the_deploy_config_validates_with_rays_schema() -> None:
    schema = ServeDeploySchema.model_validate(raw_config())
    check_deploy_config(schema)
    [app] = schema.applications
    assert app.import_path == "workers.serve.app:build_app"
    deployments = {d.name: d for d in app.deployments}
    assert set(deployments) == {"FrameConsumer", *BATCHED_DEPLOYMENTS}
    for name in BATCHED_DEPLOYMENTS:
        deployment = deployments[name]
        assert deployment.max_ongoing_requests >= deployment.user_config["max_batch_size"]
        assert deployment.autoscaling_config["max_replicas"] >= 1
    # The local default asks for no GPU: a GPU is asked for by the config, never inferred.
    assert deployments["PoseBackbone"].ray_actor_options.num_gpus == 0
    policy = deployments["FrameConsumer"].autoscaling_config["policy"]
    assert policy["policy_function"] == "workers.serve.consumer:BacklogPolicy"
    assert isinstance(build_app(app.args), Application)


def test_a_batch_larger_than_the_ongoing_requests_is_refused() -> None:
    raw = copy.deepcopy(raw_config())
    backbone = next(d for d in raw["applications"][0]["deployments"] if d["name"] == "PoseBackbone")
    backbone["max_ongoing_requests"] = backbone["user_config"]["max_batch_size"] - 1
    with pytest.raises(ValueError, match="max_ongoing_requests"):
        check_deploy_config(ServeDeploySchema.model_validate(raw))


CLUSTER_CONFIG = DEFAULT_CONFIG.with_name("serve_config.cluster.yaml")


@pytest.mark.parametrize("path", [DEFAULT_CONFIG, CLUSTER_CONFIG], ids=["local", "cluster"])
def test_every_stage_scales_on_its_own_signal(path) -> None:
    """Consumers on the backlog (custom policy, up to the shard count); the stages on handle traffic,
    the backbone on queued batches (its target is whole batches waiting per replica)."""
    [app] = load_deploy_config(path).applications
    deployments = {d.name: d for d in app.deployments}
    consumer = deployments["FrameConsumer"].autoscaling_config
    assert consumer["policy"]["policy_function"] == "workers.serve.consumer:BacklogPolicy"
    assert consumer["max_replicas"] >= consumer["min_replicas"] >= 1
    for name in BATCHED_DEPLOYMENTS:
        scaling = deployments[name].autoscaling_config
        assert "policy" not in scaling and scaling["target_ongoing_requests"] > 0
    backbone = deployments["PoseBackbone"]
    target = backbone.autoscaling_config["target_ongoing_requests"]
    assert target % backbone.user_config["max_batch_size"] == 0


def test_the_cluster_config_asks_for_gpus_and_covers_the_shards() -> None:
    [app] = load_deploy_config(CLUSTER_CONFIG).applications
    deployments = {d.name: d for d in app.deployments}
    assert deployments["PoseBackbone"].ray_actor_options.num_gpus > 0
    shards = int(app.runtime_env["env_vars"]["POSESTREAM_SHARDS"])
    assert deployments["FrameConsumer"].autoscaling_config["max_replicas"] == shards
    assert isinstance(build_app(app.args), Application)


def _context(backlogs: list[float], low: int, high: int, shards: float | None = None) -> AutoscalingContext:
    deployment = DeploymentID(name="FrameConsumer", app_name="posestream")
    replicas = [ReplicaID(unique_id=f"r{i}", deployment_id=deployment) for i in range(len(backlogs))]
    return AutoscalingContext(
        deployment_id=deployment,
        deployment_name="FrameConsumer",
        app_name="posestream",
        current_num_replicas=len(replicas),
        target_num_replicas=len(replicas),
        running_replicas=replicas,
        total_num_requests=0.0,
        total_queued_requests=0.0,
        aggregated_metrics={
            "backlog": dict(zip(replicas, backlogs, strict=True)),
            **({"shards": dict.fromkeys(replicas, shards)} if shards is not None else {}),
        },
        raw_metrics=None,
        capacity_adjusted_min_replicas=low,
        capacity_adjusted_max_replicas=high,
        policy_state={},
        last_scale_up_time=None,
        last_scale_down_time=None,
        current_time=None,
        config=None,
    )


@pytest.mark.parametrize(
    ("backlogs", "expected"),
    [([0.0], 1), ([64.0], 1), ([65.0], 2), ([100.0, 100.0], 4), ([1000.0, 0.0], 4)],
)
def test_consumers_scale_with_the_backlog_up_to_the_shard_count(backlogs: list[float], expected: int) -> None:
    replicas, state = BacklogPolicy(frames_per_replica=64)(_context(backlogs, low=1, high=4))
    assert replicas == expected
    assert state["backlog"] == sum(backlogs)


def test_consumers_never_outnumber_the_shards_the_replicas_report() -> None:
    replicas, _ = BacklogPolicy(frames_per_replica=8)(_context([1000.0], low=1, high=16, shards=3.0))
    assert replicas == 3
