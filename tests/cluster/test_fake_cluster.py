"""GPU worker nodes come with a frame backlog and go when idle, on a fake multi-node Ray cluster.

Its own step, after the main suite (``pytest tests/cluster``): it starts its own Ray head with the
``ray`` CLI (``RAY_FAKE_CLUSTER=1 ... --autoscaling-config=deploy/fake_cluster.yaml``), whose autoscaler
"launches" {CPU: 1, GPU: 1} worker nodes as extra raylets on this machine. The Serve app is the local
deploy file with the backbone asking for one GPU per replica (what deploy/serve_config.cluster.yaml does)
and scaling on its queued requests: a backlog makes Serve want a second backbone replica, nothing has a
free GPU, so the autoscaler adds a node; drained and idle, the node goes. Every process it started is
tagged through its environment and ended by that tag: never ``ray stop``, which ends every Ray here.
"""

from __future__ import annotations

import contextlib
import copy
import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import msgpack
import psutil
import pytest
import yaml

from schemas.settings import Settings
from schemas.wire import STREAM_FIELD, Frame
from workers.redis_server import RedisServer, free_port

pytestmark = pytest.mark.timeout(900)

REPO = Path(__file__).resolve().parents[2]
TAG = "POSESTREAM_FAKE_CLUSTER_TAG"
FRAMES = 100


def wait_for(condition: Callable[[], bool], timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")
        time.sleep(0.5)


def tagged_processes(tag: str) -> list[psutil.Process]:
    """Processes whose environment holds our tag. /proc/<pid>/environ is searched as raw bytes: a Ray
    process that set its title (``ray::DashboardAgent``) zeroed the start of that block, and psutil's
    ``environ()`` stops parsing there."""
    marker = f"{TAG}={tag}".encode()
    found = []
    for process in psutil.process_iter():
        if process.pid == os.getpid():
            continue
        try:
            if marker in Path(f"/proc/{process.pid}/environ").read_bytes():
                found.append(process)
        except (OSError, psutil.Error):
            continue
    return found


def stop_tagged(tag: str) -> None:
    """End every process started for this cluster (and only those): SIGTERM, then SIGKILL; again until
    none is left (a node's agents can outlive its raylet, and some ignore SIGTERM)."""
    for _ in range(5):
        processes = tagged_processes(tag)
        if not processes:
            return
        for process in processes:
            with contextlib.suppress(psutil.NoSuchProcess):
                process.send_signal(signal.SIGTERM)
        _, alive = psutil.wait_procs(processes, timeout=10)
        for process in alive:
            with contextlib.suppress(psutil.NoSuchProcess):
                process.kill()
        psutil.wait_procs(alive, timeout=5)
    raise AssertionError(f"processes of the fake cluster still alive: {tagged_processes(tag)}")


@pytest.fixture(scope="module")
def fake_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    import ray._private.services

    root = tmp_path_factory.mktemp("fake-cluster")
    port = free_port()
    address = f"{ray._private.services.get_node_ip_address()}:{port}"
    config = yaml.safe_load((REPO / "deploy" / "fake_cluster.yaml").read_text())
    config["provider"]["gcs_address"] = address
    config_path = root / "fake_cluster.yaml"
    config_path.write_text(yaml.safe_dump(config))
    tag = uuid.uuid4().hex
    temp_dir = Path("/tmp") / f"psfc-{tag[:8]}"  # short: Ray's socket paths have a length limit
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("RAY_ADDRESS")},
        TAG: tag,
        "RAY_FAKE_CLUSTER": "1",
        "AUTOSCALER_UPDATE_INTERVAL_S": "1",
        # Token authentication (Ray 2.60's default) with this run's token (conftest.py), not the user's.
        "RAY_AUTH_MODE": os.environ["RAY_AUTH_MODE"],
        "RAY_AUTH_TOKEN": os.environ["RAY_AUTH_TOKEN"],
        "RAY_SERVE_REPLICA_AUTOSCALING_METRIC_PUSH_INTERVAL_S": "1",
        "RAY_SERVE_HANDLE_AUTOSCALING_METRIC_PUSH_INTERVAL_S": "1",
    }
    ray_cli = Path(sys.executable).parent / "ray"
    command = [
        str(ray_cli), "start", "--head", f"--port={port}", "--num-cpus=2", "--num-gpus=0",
        f"--autoscaling-config={config_path}", f"--temp-dir={temp_dir}", "--include-dashboard=false",
        "--object-store-memory=200000000", "--disable-usage-stats",
    ]  # fmt: skip
    try:
        started = subprocess.run(command, env=env, capture_output=True, text=True, timeout=180)
        assert started.returncode == 0, started.stdout[-3000:] + started.stderr[-3000:]
        yield address
    finally:
        import ray

        ray.shutdown()
        stop_tagged(tag)
        shutil.rmtree(temp_dir, ignore_errors=True)


def gpu_nodes() -> int:
    import ray

    return sum(1 for node in ray.nodes() if node["Alive"] and node["Resources"].get("GPU", 0) > 0)


def gpu_app_config(settings: Settings, checkpoint: Path) -> dict:
    """deploy/serve_config.yaml with the backbone on one (fake) GPU per replica, scaling on queued calls."""
    raw = copy.deepcopy(yaml.safe_load((REPO / "deploy" / "serve_config.yaml").read_text()))
    app = raw["applications"][0]
    app["args"]["settings"] = settings.model_dump(
        mode="json", include={"redis_url", "stream_prefix", "shards", "lease_ttl_ms", "read_block_ms"}
    )
    for deployment in app["deployments"]:
        if "user_config" in deployment:
            deployment["user_config"]["checkpoint"] = str(checkpoint)
        if deployment["name"] == "PoseBackbone":
            deployment["ray_actor_options"] = {"num_cpus": 0.5, "num_gpus": 1}
            # The GPU is fake (only the resource): the replica computes on the CPU.
            deployment["user_config"]["device"] = "cpu"
            deployment["autoscaling_config"].update(
                min_replicas=1,
                initial_replicas=1,
                max_replicas=2,
                target_ongoing_requests=2,  # the consumer keeps 8 frames in flight: wants 2 replicas
                upscale_delay_s=1,
                downscale_delay_s=5,
                metrics_interval_s=1,
                look_back_period_s=2,
            )
    return raw


def test_a_backlog_adds_gpu_nodes_and_idle_ones_go(fake_cluster: str, tmp_path: Path) -> None:
    import ray
    from model_helpers import demo_checkpoint
    from ray import serve
    from ray.serve.schema import ServeDeploySchema

    from workers.serve.app import check_deploy_config, deploy_config_file

    ray.init(address=fake_cluster, log_to_driver=False)
    assert gpu_nodes() == 0  # the head has no GPU and no GPU worker runs before a replica asks

    server = RedisServer(tmp_path / "redis").start()
    try:
        settings = Settings(
            redis_url=server.url, stream_prefix="fake", shards=1, lease_ttl_ms=3000, read_block_ms=100
        )
        raw = gpu_app_config(settings, demo_checkpoint(tmp_path / "m.pt", "fake-cluster-v1", max_persons=2))
        schema = ServeDeploySchema.model_validate(raw)
        check_deploy_config(schema)
        serve.start(proxy_location="Disabled")
        # The first backbone replica asks for a GPU: the app is RUNNING only once a GPU node was added.
        deploy_config_file(schema, timeout_s=420)
        assert gpu_nodes() == 1

        import cv2
        import numpy as np

        client = server.client()
        keys = settings.shard_keys(0)
        for frame_id in range(FRAMES):
            pixels = np.random.default_rng(frame_id % 5).integers(0, 256, (96, 128, 3), dtype=np.uint8)
            image = cv2.imencode(".png", pixels)[1].tobytes()
            frame = Frame(camera_id="fake-cam", frame_id=frame_id, ts=time.time(), image=image)
            client.xadd(keys.frames, {STREAM_FIELD: frame.to_bytes()})

        # The backlog keeps the backbone busy: Serve wants a second replica, no GPU is free, a node comes.
        wait_for(lambda: gpu_nodes() == 2, 300, "a second GPU node")
        wait_for(lambda: client.xlen(keys.results) == FRAMES, 600, f"{FRAMES} results")
        # Drained: the backbone goes back to one replica and the idle GPU node is removed.
        wait_for(lambda: gpu_nodes() == 1, 300, "the idle GPU node to go")

        entries = client.xrange(keys.results)
        results = [msgpack.unpackb(fields[STREAM_FIELD.encode()], raw=False) for _, fields in entries]
        assert sorted(r["frame_id"] for r in results) == list(range(FRAMES))
        assert all(r["status"] == "ok" for r in results)
        assert client.xlen(keys.dead) == 0

        # No app, no GPU replica: the last GPU node goes too.
        serve.delete("posestream", _blocking=True)
        wait_for(lambda: gpu_nodes() == 0, 180, "every GPU node to go")
    finally:
        serve.shutdown()
        server.stop()
