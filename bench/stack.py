"""The local stack the Serve benchmarks run on, and the traffic they send it.

``bench_stack``: embedded Redis + local Ray + ``deploy/serve_config.yaml`` with the benchmark checkpoint
(workers.local_stack); ``throughput``: frames XADDed back to back, frames/s from the results' arrival at a
subscriber; ``latency``: frames offered at a fixed rate, ``latency_ms`` percentiles (Redis clock, XADD →
publish); ``replicas_info``: each replica process's memory and CPU time.
"""

from __future__ import annotations

import argparse
import contextlib
import math
import os
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from bench.common import percentiles, synthetic_frames

APP = "posestream"
CAMERAS = ("bench-cam-0", "bench-cam-1")
STAGES = ("FrameConsumer", "PoseBackbone", "PoseResidual", "ActivityClassifier")


# ---------------------------------------------------------------------------------------------- stack
def deploy_config(
    path: Path, checkpoint: Path, replicas: dict[str, int] | None = None, settings: dict | None = None
) -> Path:
    """deploy/serve_config.yaml with the benchmark checkpoint in every model stage's user_config and,
    for the deployments in ``replicas``, a fixed replica count (min = initial = max); ``settings`` become
    the app's ``args.settings`` (give a running stack's own to redeploy without restarting the consumer)."""
    from workers.serve.app import DEFAULT_CONFIG

    raw = yaml.safe_load(DEFAULT_CONFIG.read_text())
    for app in raw["applications"]:
        if settings is not None:
            app.setdefault("args", {})["settings"] = dict(settings)
        for deployment in app["deployments"]:
            if isinstance(deployment.get("user_config"), dict):
                deployment["user_config"]["checkpoint"] = str(checkpoint)
            count = (replicas or {}).get(deployment["name"])
            if count is not None:
                scaling = deployment.setdefault("autoscaling_config", {})
                scaling.update(min_replicas=count, initial_replicas=count, max_replicas=count)
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return path


def config_numbers(path: Path) -> dict[str, Any]:
    """Per deployment: num_cpus, min/max replicas, max_batch_size, batch wait and backend, as deployed."""
    raw = yaml.safe_load(path.read_text())
    out = {}
    for deployment in raw["applications"][0]["deployments"]:
        user_config = deployment.get("user_config") or {}
        scaling = deployment.get("autoscaling_config") or {}
        out[deployment["name"]] = {
            "num_cpus": (deployment.get("ray_actor_options") or {}).get("num_cpus"),
            "min_replicas": scaling.get("min_replicas"),
            "max_replicas": scaling.get("max_replicas"),
            "max_ongoing_requests": deployment.get("max_ongoing_requests"),
            "max_batch_size": user_config.get("max_batch_size"),
            "batch_wait_timeout_s": user_config.get("batch_wait_timeout_s"),
            "backend": user_config.get("backend"),
        }
    return out


@contextlib.contextmanager
def bench_stack(
    config_path: Path, num_cpus: int | None = None, in_flight: int | None = None
) -> Iterator[Any]:
    """Embedded Redis + local Ray + the Serve app of ``config_path`` (workers.local_stack); ``in_flight``
    overrides the consumer's frames-in-flight window (settings.in_flight)."""
    from workers.local_stack import local_stack

    settings = {"in_flight": in_flight} if in_flight else {}
    with local_stack(
        config_path=config_path, num_cpus=num_cpus, settings=settings, deploy_timeout_s=900
    ) as stack:
        yield stack


def deployed_settings(config_path: Path, stack: Any) -> dict[str, Any]:
    """The consumer settings really deployed: the config's ``args.settings`` with this run's overrides on
    top (``stack.settings`` holds the overrides only: reading it alone gave the Settings default window
    even where the config set another). ``in_flight`` None: the window is sized from the backbone."""
    from schemas.settings import Settings

    raw = yaml.safe_load(Path(config_path).read_text())
    configured = dict((raw["applications"][0].get("args") or {}).get("settings") or {})
    overrides = {k: v for k, v in stack.settings.items() if k not in ("redis_url", "redis_url_file")}
    settings = Settings(**{**configured, **overrides})
    return {
        "config_settings": configured,
        "overrides": overrides,
        "in_flight": settings.in_flight,
        "read_batch": settings.read_batch,
        "shards": settings.shards,
    }


def in_flight_of(stack: Any, config_path: Path | None = None) -> int | None:
    """The consumer window as deployed (``deployed_settings``); None: sized from the backbone."""
    from schemas.settings import Settings
    from workers.serve.app import DEFAULT_CONFIG

    if config_path is None and not stack.settings.get("in_flight"):
        config_path = DEFAULT_CONFIG
    if config_path is not None:
        return deployed_settings(config_path, stack)["in_flight"]
    return Settings(**stack.settings).in_flight


def consumer_state() -> dict[str, Any]:
    """What the live FrameConsumer reports: its window per shard (size and what sized it, where the
    consumer reports it) and the frames in flight now: the window really used, not the configured one."""
    from ray import serve

    try:
        stats = serve.get_deployment_handle("FrameConsumer", app_name=APP).stats.remote().result()
    except Exception as error:  # noqa: BLE001 - a figure without it is still a figure
        return {"error": repr(error)}
    return {
        key: stats.get(key)
        for key in ("window", "in_flight", "shards_held", "frames_consumed", "frames_acked")
    }


def replicas_info() -> dict[str, list[dict[str, Any]]]:
    """Per deployment, each live replica's pid, memory and CPU seconds used so far.

    Replicas are found among this process's descendants (the local Ray this run started) by their process
    title, ``ray::ServeReplica:<app>:<deployment>`` (the state API needs the dashboard, which is off)."""
    import psutil

    found: dict[str, list[dict[str, Any]]] = {name: [] for name in STAGES}
    for process in psutil.Process().children(recursive=True):
        try:
            title = " ".join(process.cmdline())
            if f"ServeReplica:{APP}:" not in title:
                continue
            name = title.split(f"ServeReplica:{APP}:", 1)[1].split()[0].split(".")[0]
            if name not in found:
                continue
            memory = process.memory_full_info()
            times = process.cpu_times()
        except (psutil.Error, OSError, IndexError):
            continue
        found[name].append(
            {
                "pid": process.pid,
                "cpu_s": round(times.user + times.system, 3),
                "rss_mib": round(memory.rss / 2**20, 1),
                "uss_mib": round(memory.uss / 2**20, 1),
                "pss_mib": round(getattr(memory, "pss", 0) / 2**20, 1),
            }
        )
    return found


def ray_torch_threads(num_cpus: float | None) -> int:
    """The torch threads of a Ray actor: Ray sets OMP_NUM_THREADS = max(floor(num_cpus), 1) in the worker
    (ray._private.utils.set_omp_num_threads_if_unset) unless the environment sets it."""
    if os.environ.get("OMP_NUM_THREADS", "").isdigit():
        return int(os.environ["OMP_NUM_THREADS"])
    return max(math.floor(num_cpus or 1), 1)


def cores_used(before: dict[str, list[dict]], after: dict[str, list[dict]], seconds: float) -> dict:
    """CPU cores each deployment's replicas used on average between two ``replicas_info`` calls."""
    used = {}
    for name, replicas in after.items():
        start = {r["pid"]: r["cpu_s"] for r in before.get(name, [])}
        busy = sum(r["cpu_s"] - start.get(r["pid"], r["cpu_s"]) for r in replicas)
        used[name] = round(busy / seconds, 2) if seconds > 0 else None
    return used


def backbone_batches() -> list[int]:
    from ray import serve

    return serve.get_deployment_handle("PoseBackbone", app_name=APP).batch_sizes.remote().result()


# ---------------------------------------------------------------------------------------------- traffic
@dataclass
class Outputs:
    """What came back for each (camera, frame): FrameResult/DeadLetter arrival time, latencies."""

    arrived: dict[tuple[str, int], float] = field(default_factory=dict)  # monotonic
    status: dict[tuple[str, int], str] = field(default_factory=dict)
    persons: dict[tuple[str, int], int] = field(default_factory=dict)
    frame_latency_ms: dict[tuple[str, int], float] = field(default_factory=dict)
    event_latency_ms: dict[tuple[str, int], list[float]] = field(default_factory=dict)


class Collector:
    """Reads events, results and dead letters (position mode, from the start of the streams)."""

    def __init__(self, settings: Any) -> None:
        from workers.client import EventSubscriber

        self.subscriber = EventSubscriber(
            settings=settings, kinds=("events", "results", "dead"), start="0", block_ms=100, count=500
        )
        self.out = Outputs()
        self.lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="bench-collector", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        from schemas.wire import FrameResult, PersonEvent

        for message in self.subscriber.messages(follow=True, stop=self._stop):
            now = time.monotonic()
            key = (message.camera_id, message.frame_id)
            with self.lock:
                if isinstance(message, PersonEvent):
                    self.out.event_latency_ms.setdefault(key, []).append(message.latency_ms)
                elif isinstance(message, FrameResult):
                    self.out.arrived[key] = now
                    self.out.status[key] = message.status
                    self.out.persons[key] = message.persons
                    self.out.frame_latency_ms[key] = message.latency_ms
                else:
                    self.out.arrived[key] = now
                    self.out.status[key] = f"dead:{message.reason}"

    def wait(self, keys: Sequence[tuple[str, int]], timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            with self.lock:
                if all(k in self.out.arrived for k in keys):
                    return
            time.sleep(0.02)
        missing = [k for k in keys if k not in self.out.arrived]
        raise TimeoutError(f"{len(missing)} of {len(keys)} frames without a result after {timeout_s} s")

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self.subscriber.close()


def publish_frames(publisher: Any, jpegs: Sequence[bytes], count: int, rate: float | None = None) -> list:
    """XADD ``count`` frames round-robin over the cameras, back to back (``rate`` None) or paced."""
    keys = []
    started = time.monotonic()
    for index in range(count):
        if rate:
            delay = started + index / rate - time.monotonic()
            if delay > 0:
                time.sleep(delay)
        camera = CAMERAS[index % len(CAMERAS)]
        outcome = publisher.publish(jpegs[index % len(jpegs)], camera_id=camera)
        keys.append((outcome.camera_id, outcome.frame_id))
    return keys


def throughput(stack: Any, jpegs: Sequence[bytes], frames: int, warmup: int, timeout_s: float) -> dict:
    """Frames/s of the deployed pipeline in steady state (the first ``warmup`` results are not counted)."""
    from schemas.settings import Settings
    from workers.client import FramePublisher

    settings = Settings(**stack.settings)
    collector = Collector(settings)
    publisher = FramePublisher(settings=settings, policy="wait", max_backlog=64, wait_timeout_s=timeout_s)
    try:
        keys = publish_frames(publisher, jpegs, warmup + frames)
        collector.wait(keys, timeout_s)
    finally:
        publisher.close()
        collector.close()
    out = collector.out
    # Results come in bursts (a batch is published together): count those that arrived after the last
    # warm-up one, over the time from it to the last result.
    times = sorted(out.arrived[k] for k in keys)
    start = times[max(warmup, 1) - 1]
    span = times[-1] - start
    counted = sum(1 for t in times if t > start)
    if span <= 0 or counted == 0:
        raise RuntimeError("all results arrived at once: measure more frames (--frames)")
    statuses = [out.status[k] for k in keys]
    return {
        "frames_per_s": round(counted / span, 3),
        "frames": frames,
        "frames_counted": counted,
        "warmup_frames": warmup,
        "span_s": round(span, 2),
        "statuses": {s: statuses.count(s) for s in sorted(set(statuses))},
        "persons_per_frame": sorted({out.persons.get(k, -1) for k in keys}),
    }


def latency(stack: Any, jpegs: Sequence[bytes], frames: int, rate: float, timeout_s: float) -> dict:
    """Latency percentiles with frames offered at ``rate`` frames/s, evenly paced."""
    from schemas.settings import Settings
    from workers.client import FramePublisher

    settings = Settings(**stack.settings)
    collector = Collector(settings)
    publisher = FramePublisher(settings=settings, policy="wait", max_backlog=64, wait_timeout_s=timeout_s)
    try:
        started = time.monotonic()
        keys = publish_frames(publisher, jpegs, frames, rate=rate)
        offered = frames / max(time.monotonic() - started, 1e-9) if frames > 1 else rate
        collector.wait(keys, timeout_s)
    finally:
        publisher.close()
        collector.close()
    out = collector.out
    events = [ms for k in keys for ms in out.event_latency_ms.get(k, [])]
    results = [out.frame_latency_ms[k] for k in keys if k in out.frame_latency_ms]
    return {
        "offered_frames_per_s": round(rate, 3),
        "achieved_offer_frames_per_s": round(offered, 3),
        "frames": frames,
        "events": len(events),
        "event_latency_ms": percentiles(events),
        "result_latency_ms": percentiles(results),
    }


def encoded_frames(count: int, size: int, people: int) -> tuple[list[bytes], list[np.ndarray]]:
    """Synthetic frames as JPEG bytes (what is published) and decoded back (what the bare side gets)."""
    import cv2

    from workers.client import encode_image

    jpegs = [encode_image(frame) for frame in synthetic_frames(count, size, people=people)]
    decoded = [cv2.imdecode(np.frombuffer(j, np.uint8), cv2.IMREAD_COLOR) for j in jpegs]
    return jpegs, decoded


def add_common_args(parser: argparse.ArgumentParser, persons: int) -> None:
    parser.add_argument("--preset", default="demo", choices=("demo", "default"))
    parser.add_argument("--size", type=int, default=256, help="input side in px (multiple of 32), e.g. 480")
    parser.add_argument("--persons", type=int, default=persons, help="persons the detector reports per frame")
    parser.add_argument("--checkpoint", default=None, help="weights to use (default: seeded random)")
    parser.add_argument("--frames", type=int, default=64, help="frames counted for the throughput")
    parser.add_argument("--warmup-frames", type=int, default=8)
    parser.add_argument("--distinct-frames", type=int, default=12)
    parser.add_argument("--scene-people", type=int, default=3)
    parser.add_argument("--timeout", type=float, default=600.0)
    parser.add_argument("--in-flight", type=int, default=None, help="consumer window (default: settings)")
