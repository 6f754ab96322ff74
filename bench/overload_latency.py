"""Latency and throughput when live cameras outrun the machine: 0.5x, 1x and 2x the sustainable rate.

Paths measured (``--path``), both with the packaged demo checkpoint on an embedded Redis
(``workers.redis_server``), fed by ``FramePublisher`` the way ``posestream publish`` feeds live cameras:
frames carry ``max_age_s`` (the live default, 2 s) and the publisher waits at a backlog of 32, as the demo.
The consumer's window is sized by the rule of ``workers.streams.window`` (no ``in_flight`` pinned).

* ``in-process``: the ``posestream worker`` path, ``StreamConsumer`` with ``LocalPipeline`` (leases, fence
  and ordering as deployed) on an event-loop thread of this process;
* ``serve``: the ``make run`` path, local Ray + ``deploy/serve_config.yaml`` as deployed (FrameConsumer,
  PoseBackbone, PoseResidual, ActivityClassifier replicas), ``workers.local_stack``.

1. bare batch time: ``PosePipeline.predict`` on one batch of the backbone's ``max_batch_size`` (from
   deploy/serve_config.yaml), all cores' threads, median of repeats;
2. the sustainable rate: after a warm-up batch, frames published back to back for ``--burst-seconds``
   (the publisher holding at its backlog) drained through the worker, frames/s of ok results;
3. each load (0.5x, 1x, 2x that rate, two cameras) for ``--seconds``, ``--repeats`` times in turn:
   latency p50/p95 (FrameResult ``latency_ms`` of ok frames: XADD to publish on the Redis clock), ok
   frames/s, stale frames. Goal (issue 20): at 2x, p50 <= 3 x bare batch time, frames/s >= 0.9 x the 1x.

    python -m bench.overload_latency              # full: bench/results/overload_latency.json (+ .md)
    python -m bench.overload_latency --path serve # bench/results/overload_latency_serve.json (+ .md)
    python -m bench.overload_latency --smoke      # seconds, 128 px, to /tmp: checks that it runs
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from bench.common import RESULTS, LoadMonitor, environment, markdown_table, synthetic_frames, write_json

LOADS = (0.5, 1.0, 2.0)
PUBLISHER_BACKLOG = 32  # as the demo
PATHS = {
    "in-process": "in-process worker (StreamConsumer + LocalPipeline) on an embedded redis-server",
    "serve": "Ray Serve as deployed (deploy/serve_config.yaml, workers.local_stack) on an embedded "
    "redis-server",
}


def backbone_batch() -> int:
    from workers.serve.app import load_deploy_config

    app = load_deploy_config().applications[0]
    backbone = next(d for d in app.deployments if d.name == "PoseBackbone")
    return int(backbone.user_config["max_batch_size"])


def bare_batch_ms(pose: Any, frames: list[np.ndarray], batch: int, repeats: int) -> list[float]:
    images = [frames[i % len(frames)] for i in range(batch)]
    pose.predict(images)  # warm-up
    samples = []
    for _ in range(repeats):
        started = time.perf_counter()
        pose.predict(images)
        samples.append((time.perf_counter() - started) * 1000)
    return samples


class Worker:
    """The in-process worker on its own event loop thread, as ``posestream worker`` runs it."""

    def __init__(self, url: str, settings: Any, pipeline: Any, batch: int) -> None:
        self.url, self.settings, self.pipeline, self.batch = url, settings, pipeline, batch
        self.loop = asyncio.new_event_loop()
        self.consumer: Any = None
        self.ready = threading.Event()
        self.thread = threading.Thread(target=self._run, name="bench-worker", daemon=True)

    def _run(self) -> None:
        from workers.streams import StreamConsumer, connect

        async def main() -> None:
            client = connect(self.url, self.settings)
            self.consumer = StreamConsumer(client, self.pipeline, self.settings, call_batch=self.batch)
            self.ready.set()
            try:
                await self.consumer.run()
            finally:
                await client.aclose()

        self.loop.run_until_complete(main())

    def __enter__(self) -> Worker:
        self.thread.start()
        self.ready.wait(60)
        return self

    def __exit__(self, *exc: object) -> None:
        self.loop.call_soon_threadsafe(self.consumer.stop)
        self.thread.join(120)


def delivered_fps(times: list[float]) -> float | None:
    """Frames/s from results' arrival times (s). A batch's results arrive together, so the frames of the
    first arrival are the start line, not frames delivered within the span: counting them (``(n - 1) /
    span``) overstated the rate by a batch's worth over a short burst."""
    if len(times) < 2:
        return None
    first, span = min(times), max(times) - min(times)
    counted = sum(1 for t in times if t > first)
    return round(counted / span, 3) if span > 0 and counted else None


def run_load(
    client: Any,
    settings: Any,
    frames: list[np.ndarray],
    rate: float,
    seconds: float,
    tag: str,
    max_age: float | None,
) -> dict[str, Any]:
    """Two cameras at ``rate`` frames/s in all for ``seconds``; waits until every frame has its outcome."""
    from schemas.wire import STREAM_FIELD, FrameResult
    from workers.client import FramePublisher

    cameras = [f"{tag}-a", f"{tag}-b"]
    publisher = FramePublisher(settings=settings, client=client, policy="wait", max_backlog=PUBLISHER_BACKLOG)
    interval = 1.0 / (rate / len(cameras))
    published = {cam: 0 for cam in cameras}
    results_keys = [settings.shard_keys(shard).results for shard in range(settings.shards)]
    start_id = f"{int(client.time()[0] * 1000)}-0"

    def camera(cam: str, offset: int) -> None:
        due = time.monotonic()
        end = due + seconds
        while time.monotonic() < end:
            publisher.publish(frames[(published[cam] + offset) % len(frames)], cam, max_age_s=max_age)
            published[cam] += 1
            due += interval
            time.sleep(max(0.0, due - time.monotonic()))

    started = time.monotonic()
    threads = [threading.Thread(target=camera, args=(cam, i * 7)) for i, cam in enumerate(cameras)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    total = sum(published.values())
    results: list[tuple[float, FrameResult]] = []
    deadline = time.monotonic() + 600
    while len(results) < total and time.monotonic() < deadline:
        entries = [entry for key in results_keys for entry in client.xrange(key, min=start_id)]
        results = []
        for entry_id, fields in entries:
            result = FrameResult.from_bytes(fields[STREAM_FIELD.encode()])
            if result.camera_id in cameras:
                results.append((int(entry_id.decode().split("-")[0]) / 1000, result))
        time.sleep(0.2)
    ok = [(t, r) for t, r in results if r.status == "ok"]
    latency = [r.latency_ms for _, r in ok]
    return {
        "offered_fps": round(rate, 3),
        "published": total,
        "ok": len(ok),
        "stale": sum(r.status == "stale" for _, r in results),
        "unaccounted": total - len(results),
        "latency_ms_p50": round(float(np.percentile(latency, 50)), 1) if latency else None,
        "latency_ms_p95": round(float(np.percentile(latency, 95)), 1) if latency else None,
        "ok_fps": delivered_fps([t for t, _ in ok]),
        "wall_s": round(time.monotonic() - started, 2),
    }


@contextlib.contextmanager
def in_process(pose: Any, batch: int) -> Iterator[tuple[Any, Callable[[], dict[str, Any]]]]:
    """The in-process worker on an embedded Redis: its settings, and its consumer's stats."""
    from schemas.settings import Settings
    from workers.pipeline import LocalPipeline
    from workers.redis_server import RedisServer

    with tempfile.TemporaryDirectory() as tmp, RedisServer(Path(tmp), appendfsync="no") as redis:
        settings = Settings(
            redis_url=redis.url, stream_prefix="bench-overload", read_batch=batch, preview_fps=0
        )
        with Worker(redis.url, settings, LocalPipeline(pose), batch) as worker:
            yield settings, worker.consumer.stats


@contextlib.contextmanager
def through_serve() -> Iterator[tuple[Any, Callable[[], dict[str, Any]]]]:
    """The deployed Serve app on local Ray and an embedded Redis: its settings, and the FrameConsumer's
    stats (the window really in use)."""
    from bench.stack import bench_stack, consumer_state
    from schemas.settings import Settings
    from workers.serve.app import DEFAULT_CONFIG

    with bench_stack(DEFAULT_CONFIG) as stack:
        yield Settings(**stack.settings), consumer_state


def measure(args: argparse.Namespace) -> dict[str, Any]:
    import torch

    from model.pipeline import PosePipeline
    from schemas.settings import Settings
    from workers.client import connect

    torch.set_num_threads(args.threads)  # the whole machine, for the bare side and the worker alike
    batch = backbone_batch()
    frames = synthetic_frames(24, args.size, people=3)
    pose = PosePipeline.load(None, device="cpu")
    live_age = Settings().live_max_age_s if args.max_age is None else args.max_age
    with LoadMonitor() as load:
        bare = bare_batch_ms(pose, frames, batch, args.bare_repeats)
        if args.path == "serve":
            del pose  # the replicas load their own
            gc.collect()
            worker = through_serve()
        else:
            worker = in_process(pose, batch)
        with worker as (settings, consumer_stats):
            client = connect(settings.redis_url)
            # warm-up, not counted: fresh replicas' first batches (lazy init, oneDNN primitives) are slow
            run_load(client, settings, frames, float(batch), 1.0, "warm", None)
            # the sustainable rate: frames back to back for --burst-seconds with no age bound (the publisher
            # holds at its backlog), drained; frames/s of ok results
            burst = run_load(client, settings, frames, 100.0, args.burst_seconds, "burst", None)
            sustainable = burst["ok_fps"] or 0.1
            window = consumer_stats()["window"]
            runs: dict[str, list[dict[str, Any]]] = {str(x): [] for x in LOADS}
            for repeat in range(args.repeats):
                for factor in LOADS:
                    tag = f"x{factor}-r{repeat}".replace(".", "_")
                    runs[str(factor)].append(
                        run_load(client, settings, frames, factor * sustainable, args.seconds, tag, live_age)
                    )
            client.close()

    def summary(samples: list[dict[str, Any]]) -> dict[str, Any]:
        def values(key: str) -> list[float]:
            return [s[key] for s in samples if s[key] is not None]

        return {
            key: {"median": statistics.median(v), "min": min(v), "max": max(v)}
            if (v := values(key))
            else None
            for key in ("latency_ms_p50", "latency_ms_p95", "ok_fps")
        } | {"stale": sum(s["stale"] for s in samples), "published": sum(s["published"] for s in samples)}

    loads = {factor: summary(samples) for factor, samples in runs.items()}
    bare_ms = statistics.median(bare)
    p50_2x = (loads["2.0"]["latency_ms_p50"] or {}).get("median")
    fps_1x, fps_2x = ((loads[f]["ok_fps"] or {}).get("median") for f in ("1.0", "2.0"))
    return {
        "benchmark": "overload_latency",
        "command": "python -m bench.overload_latency " + " ".join(args.argv),
        "path": PATHS[args.path],
        "smoke": args.smoke,
        "size_px": args.size,
        "threads": args.threads,
        "backbone_max_batch_size": batch,
        "window": window,
        "frame_max_age_s": live_age,
        "publisher_max_backlog": PUBLISHER_BACKLOG,
        "bare_batch_ms": {"median": round(bare_ms, 1), "samples": [round(s, 1) for s in bare]},
        "sustainable": burst,
        "loads": loads,
        "runs": runs,
        "goal": {
            "p50_2x_over_bare_batch": round(p50_2x / bare_ms, 2) if p50_2x else None,
            "p50_2x_ok": bool(p50_2x and p50_2x <= 3 * bare_ms),
            "fps_2x_over_1x": round(fps_2x / fps_1x, 3) if fps_1x and fps_2x else None,
            "fps_ok": bool(fps_1x and fps_2x and fps_2x >= 0.9 * fps_1x),
        },
        "load": load.summary(),
        "environment": environment(),
    }


def window_text(windows: dict[Any, dict[str, Any]]) -> str:
    """The consumer's window per shard as read from it: frames and what sized them."""
    parts = []
    for shard, w in sorted(windows.items(), key=lambda item: str(item[0])):
        sized = (
            f"{w['max_batch_size']} x {w['replicas']} replica(s), {w.get('device_type')}, "
            f"{w.get('queued_batches')} batch queued"
            if w.get("max_batch_size")
            else "pinned"
        )
        parts.append(f"shard {shard}: {w['frames']} frames ({w['source']}: {sized})")
    return "; ".join(parts) or "not reported"


def markdown(result: dict[str, Any]) -> str:
    def cell(figure: dict[str, float] | None) -> str:
        return "–" if figure is None else f"{figure['median']:.1f} ({figure['min']:.1f}–{figure['max']:.1f})"

    rows = [
        [f"{factor}x", cell(r["latency_ms_p50"]), cell(r["latency_ms_p95"]), cell(r["ok_fps"]), r["stale"],
         r["published"]]
        for factor, r in result["loads"].items()
    ]  # fmt: skip
    load, env, goal = result["load"], result["environment"], result["goal"]
    return "\n".join([
        "# Latency under overload",
        "",
        f"{result['path']}; {result['size_px']} px, {result['threads']} threads; window "
        f"{window_text(result['window'])}; frames' max_age_s {result['frame_max_age_s']}.",
        f"Bare batch time ({result['backbone_max_batch_size']} frames): "
        f"{result['bare_batch_ms']['median']} ms; "
        f"sustainable {result['sustainable']['ok_fps']} frames/s.",
        "",
        markdown_table(["load", "p50 ms (range)", "p95 ms", "ok frames/s", "stale", "published"], rows),
        "",
        f"Goal: p50 at 2x / bare batch = {goal['p50_2x_over_bare_batch']} (<= 3: {goal['p50_2x_ok']}); "
        f"frames/s 2x / 1x = {goal['fps_2x_over_1x']} (>= 0.9: {goal['fps_ok']})",
        f"Commit {env.get('git_commit')} (dirty: {env.get('git_dirty')}); load average before "
        f"{load['load_average_before']}, after {load['load_average_after']}"
        + (f"; {load['warning']}" if load.get("warning") else ""),
    ]) + "\n"  # fmt: skip


def main(argv: list[str] | None = None) -> dict[str, Any]:
    import os

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--path", choices=sorted(PATHS), default="in-process", help="worker path measured")
    parser.add_argument("--size", type=int, default=480)
    parser.add_argument("--seconds", type=float, default=60.0, help="per load and repeat")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument(
        "--burst-seconds", type=float, default=20.0, help="back-to-back publishing for the sustainable rate"
    )
    parser.add_argument("--bare-repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=len(os.sched_getaffinity(0)))
    parser.add_argument(
        "--max-age", type=float, default=None, help="frames' max_age_s (default: the live one)"
    )
    parser.add_argument("--smoke", action="store_true", help="seconds: 128 px, 3 s loads, 1 repeat, to /tmp")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)
    args.argv = list(argv) if argv is not None else sys.argv[1:]
    if args.smoke:
        args.size, args.seconds, args.repeats, args.burst_seconds, args.bare_repeats = 128, 3.0, 1, 2.0, 1
    name = "overload_latency" + ("_serve" if args.path == "serve" else "")
    out = args.out or (Path(f"/tmp/{name}.smoke.json") if args.smoke else RESULTS / f"{name}.json")
    result = measure(args)
    write_json(out, result)
    text = markdown(result)
    out.with_suffix(".md").write_text(text)
    print(text)
    print(f"wrote {out}")
    return result


if __name__ == "__main__":
    main()
