"""One Ray + Serve instance for the whole Serve suite, one embedded redis-server, and the application
deployed from deploy/serve_config.yaml itself (only the checkpoint, the Redis address and the stream
settings are set here; two shards, so that the scaling test can spread them over two consumers — the
other tests publish to shard 0 only).

The model is the demo preset, untrained, at a 128 px input with its score thresholds at 0 so that every
frame yields a few persons (the parity tests then compare real boxes, keypoints and activities).
"""

from __future__ import annotations

import copy
import os
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import msgpack
import numpy as np
import pytest
import redis

from schemas.settings import Settings
from schemas.wire import STREAM_FIELD, Frame
from workers.redis_server import RedisServer, free_port

APP = "posestream"
MODEL_STAGES = ("PoseBackbone", "PoseResidual", "ActivityClassifier")


def png_image(seed: int, width: int = 128, height: int = 96) -> bytes:
    import cv2

    pixels = np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)
    ok, encoded = cv2.imencode(".png", pixels)
    assert ok
    return encoded.tobytes()


@dataclass
class ServeApp:
    settings: Settings
    redis: redis.Redis
    metrics_port: int
    checkpoints: dict[str, Path]
    schema_raw: dict

    def publish(self, camera_id: str, frame_id: int, image: bytes, shard: int = 0) -> str:
        frame = Frame(camera_id=camera_id, frame_id=frame_id, ts=time.time(), image=image)
        keys = self.settings.shard_keys(shard)
        return self.redis.xadd(keys.frames, {STREAM_FIELD: frame.to_bytes()}).decode()

    def messages(self, kind: str, shard: int = 0) -> list[dict]:
        key = getattr(self.settings.shard_keys(shard), kind)
        return [msgpack.unpackb(f[STREAM_FIELD.encode()], raw=False) for _, f in self.redis.xrange(key)]

    def count(self, kind: str, shard: int = 0) -> int:
        return int(self.redis.xlen(getattr(self.settings.shard_keys(shard), kind)))

    def wait_for(self, condition: Callable[[], bool], timeout_s: float, what: str) -> None:
        deadline = time.monotonic() + timeout_s
        while not condition():
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")
            time.sleep(0.1)

    def handle(self, deployment: str):
        from ray import serve

        return serve.get_deployment_handle(deployment, app_name=APP)

    png_image = staticmethod(lambda seed, width=128, height=96: png_image(seed, width, height))
    metric_total = staticmethod(lambda text, name, **labels: metric_total(text, name, **labels))

    def scrape(self) -> str:
        url = f"http://127.0.0.1:{self.metrics_port}/metrics"
        return urllib.request.urlopen(url, timeout=10).read().decode()

    def redeploy(self, **user_config: object) -> None:
        """Deploy the same config again with these user_config changes in every model stage."""
        raw = copy.deepcopy(self.schema_raw)
        for deployment in raw["applications"][0]["deployments"]:
            if deployment["name"] in MODEL_STAGES:
                deployment["user_config"].update(user_config)
        self.deploy(raw)

    def deploy(self, raw: dict) -> None:
        """Deploy this config (e.g. a copy of ``schema_raw`` with changes) and wait until it runs."""
        from ray.serve.schema import ServeDeploySchema

        from workers.serve.app import deploy_config_file

        self.schema_raw = raw
        deploy_config_file(ServeDeploySchema.model_validate(raw), timeout_s=240)

    def replica_count(self, deployment: str) -> int:
        """RUNNING replicas of a deployment of the app."""
        from ray import serve

        status = serve.status().applications[APP].deployments[deployment]
        return int(status.replica_states.get("RUNNING", 0))


def metric_total(text: str, name: str, **labels: str) -> float:
    """Sum of a Prometheus metric's samples (every replica) whose labels include ``labels``."""
    total = 0.0
    for line in text.splitlines():
        if not line.startswith(name + "{") and not line.startswith(name + " "):
            continue
        if all(f'{key}="{value}"' in line for key, value in labels.items()):
            total += float(line.rsplit(" ", 1)[1])
    return total


@pytest.fixture(scope="session")
def serve_app(tmp_path_factory: pytest.TempPathFactory):
    import ray
    import yaml
    from model_helpers import demo_checkpoint
    from ray import serve
    from ray.serve.schema import ServeDeploySchema

    from workers.serve.app import DEFAULT_CONFIG, deploy_config_file

    # Replicas report their autoscaling stats every second (default 10 s), so scaling tests stay short.
    os.environ.setdefault("RAY_SERVE_REPLICA_AUTOSCALING_METRIC_PUSH_INTERVAL_S", "1")
    root = tmp_path_factory.mktemp("serve")
    checkpoints = {
        "test-v1": demo_checkpoint(root / "v1.pt", "test-v1", seed=1),
        "test-v2": demo_checkpoint(root / "v2.pt", "test-v2", seed=2),
    }
    server = RedisServer(root / "redis").start()
    metrics_port = free_port()
    ray.init(
        num_cpus=2,
        include_dashboard=False,
        object_store_memory=200 * 1024 * 1024,
        _metrics_export_port=metrics_port,
        log_to_driver=False,
    )
    serve.start(proxy_location="Disabled")
    settings = Settings(
        redis_url=server.url,
        stream_prefix="svt",
        shards=2,
        lease_ttl_ms=3000,
        read_block_ms=100,
        max_deliveries=8,
    )
    raw = yaml.safe_load(DEFAULT_CONFIG.read_text())
    app = raw["applications"][0]
    app["args"]["settings"] = settings.model_dump(
        mode="json",
        include={"redis_url", "stream_prefix", "shards", "lease_ttl_ms", "read_block_ms", "max_deliveries"},
    )
    # The hung-replica test: a stopped residual replica is found out in ~20 s (3 failed checks), and
    # its calls time out in 8 s, instead of the config's 15 s checks and 30 s calls.
    app["args"]["stage_retry"]["timeout_s"] = 8
    for deployment in app["deployments"]:
        if deployment["name"] == "PoseResidual":
            deployment.update(health_check_period_s=2, health_check_timeout_s=5)
        if deployment["name"] in MODEL_STAGES:
            deployment["user_config"] = {
                **deployment["user_config"],
                "checkpoint": str(checkpoints["test-v1"]),
            }
    try:
        deploy_config_file(ServeDeploySchema.model_validate(raw), timeout_s=240)
        yield ServeApp(settings, server.client(), metrics_port, checkpoints, raw)
    finally:
        serve.shutdown()
        ray.shutdown()
        server.stop()
