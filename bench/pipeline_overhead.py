"""Pipeline overhead (frames/s through Redis + Serve + PRN + activity vs. the bare batched model) and latency
(p50/p95/p99 from XADD to event at a fixed offered load below capacity), in one run.

    .venv/bin/python -m bench.pipeline_overhead [--size 256] [--persons 5] [--frames 64] [--load 0.5]

Both sides run one network: a benchmark checkpoint (the ``--preset`` at ``--size`` px, seeded weights, the
detector forced to report exactly ``--persons`` boxes per frame: see ``bench.common.forced_persons_config``)
that the Serve replicas load through their ``user_config`` and the bare side loads with
``PosePipeline.load``. The Serve app is ``deploy/serve_config.yaml`` as it is (replicas, CPUs, batching).

* pipeline — pre-encoded JPEG frames of the synthetic sequence, two cameras, are XADDed as fast as the
  publisher's backpressure (policy wait) lets them; frames/s = results counted after ``--warmup-frames``
  divided by the time between their arrival at a subscriber. Includes the XADD, the consumer's read,
  JPEG decode, letterbox, the three stage deployments (dynamically batched), the fenced publish of events
  and results, and the subscriber's read.
* bare — the same frames, decoded, in batches of the backbone's ``max_batch_size`` through
  ``PosePipeline.predict`` (letterbox, backbone + heads, PRN, activity: the same code the stages call) in
  this process, with as many torch threads as the backbone replica has (Ray gives an actor with
  ``num_cpus`` < 2 one thread). Measured right before and right after the pipeline, while the stack is
  up and idle; the ratio uses the mean of the two.
* latency — frames offered at ``--load`` × the pipeline's measured frames/s, evenly paced; ``latency_ms``
  of every PersonEvent (and FrameResult): XADD id time → publish, both on the Redis clock.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from bench.common import (
    LoadMonitor,
    add_output_args,
    environment,
    forced_persons_config,
    markdown_table,
    parse_bench_args,
    pin_threads,
    plot_bars,
    run_benchmark,
    time_call,
    write_bench_checkpoint,
)
from bench.stack import (
    CAMERAS,
    add_common_args,
    backbone_batches,
    bench_stack,
    config_numbers,
    cores_used,
    deploy_config,
    encoded_frames,
    in_flight_of,
    latency,
    ray_torch_threads,
    replicas_info,
    throughput,
)


def bare_forward(pipeline: Any, frames: Sequence[np.ndarray], batch: int, warmup: int, repeats: int) -> dict:
    """``PosePipeline.predict`` on one batch of ``batch`` decoded frames, and the backbone stage alone."""
    images = [frames[i % len(frames)] for i in range(batch)]
    full = time_call(lambda: pipeline.predict(images), warmup=warmup, repeats=repeats)
    backbone = time_call(lambda: pipeline.backbone(images), warmup=0, repeats=max(1, repeats // 2))
    single = time_call(lambda: pipeline.predict(images[:1]), warmup=1, repeats=max(3, repeats))
    return {
        "batch": batch,
        "frames_per_s": round(batch / (full.median_ms / 1000), 3),
        "predict": full.summary(),
        "backbone_only_frames_per_s": round(batch / (backbone.median_ms / 1000), 3),
        "batch1_frames_per_s": round(1 / (single.median_ms / 1000), 3),
    }


def measure(args: argparse.Namespace) -> dict[str, Any]:
    from model.pipeline import PosePipeline

    config = forced_persons_config(
        args.preset, args.size, args.persons, nms_iou_threshold=1.0, candidates_per_level=100
    )
    with tempfile.TemporaryDirectory(prefix="posestream-bench-") as folder, LoadMonitor() as load:
        checkpoint = write_bench_checkpoint(config, Path(folder) / "bench.pt", args.checkpoint)
        config_path = deploy_config(Path(folder) / "serve_config.yaml", checkpoint)
        numbers = config_numbers(config_path)
        batch = int(numbers["PoseBackbone"]["max_batch_size"])
        jpegs, decoded = encoded_frames(args.distinct_frames, args.size, args.scene_people)
        backbone_threads = ray_torch_threads(numbers["PoseBackbone"]["num_cpus"])
        threads = pin_threads(args.threads or backbone_threads)
        with bench_stack(config_path, in_flight=args.in_flight) as stack:
            bare_model = PosePipeline.load(checkpoint)
            bare_before = bare_forward(bare_model, decoded, batch, args.warmup, args.repeats)
            print(f"bare before: {bare_before['frames_per_s']} frames/s", flush=True)
            batches_before = len(backbone_batches())
            replicas_before, started = replicas_info(), time.monotonic()
            pipe = throughput(stack, jpegs, args.frames, args.warmup_frames, args.timeout)
            replicas = replicas_info()
            pipe["cores_used"] = cores_used(replicas_before, replicas, time.monotonic() - started)
            sizes = backbone_batches()[batches_before:]
            print(f"pipeline: {pipe['frames_per_s']} frames/s {pipe['statuses']}", flush=True)
            bare_after = bare_forward(bare_model, decoded, batch, args.warmup, args.repeats)
            print(f"bare after: {bare_after['frames_per_s']} frames/s", flush=True)
            bare_fps = (bare_before["frames_per_s"] + bare_after["frames_per_s"]) / 2
            bare_batch1 = (bare_before["batch1_frames_per_s"] + bare_after["batch1_frames_per_s"]) / 2
            in_flight = in_flight_of(stack)
            rate = args.load * pipe["frames_per_s"]
            lat = latency(stack, jpegs, args.latency_frames, rate, args.timeout)
            print(f"latency at {rate:.2f} frames/s: events {lat['event_latency_ms']}", flush=True)
    return {
        "benchmark": "pipeline_overhead",
        "command": "python -m bench.pipeline_overhead " + " ".join(args.argv),
        "settings": {
            "preset": args.preset,
            "size": args.size,
            "persons_per_frame": args.persons,
            "batch": batch,
            "torch_threads_both_sides": threads,
            "backbone_replica_torch_threads": backbone_threads,
            "frames": args.frames,
            "warmup_frames": args.warmup_frames,
            "load_fraction": args.load,
            "consumer_in_flight": in_flight,
            "cameras": len(CAMERAS),
            "deploy": numbers,
        },
        "environment": environment(),
        "load": load.summary(),
        "bare": {
            "before": bare_before,
            "after": bare_after,
            "frames_per_s_mean": round(bare_fps, 3),
            "batch1_frames_per_s_mean": round(bare_batch1, 3),
        },
        "pipeline": {
            **pipe,
            "backbone_batch_sizes": sizes,
            "backbone_batch_mean": round(float(np.mean(sizes)), 2) if sizes else None,
        },
        "ratio_pipeline_over_bare": round(pipe["frames_per_s"] / bare_fps, 3),
        "ratio_pipeline_over_bare_batch1": round(pipe["frames_per_s"] / bare_batch1, 3),
        "ratio_goal": 0.85,
        "latency": lat,
        "replicas": replicas,
    }


def markdown(result: dict[str, Any]) -> str:
    s, lat = result["settings"], result["latency"]
    ev, fr = lat["event_latency_ms"], lat["result_latency_ms"]
    bare_label = f"bare batched model (PosePipeline.predict, batch {s['batch']})"
    rows = [
        [bare_label, result["bare"]["frames_per_s_mean"]],
        ["Redis + Serve + PRN + activity", result["pipeline"]["frames_per_s"]],
        ["ratio pipeline / bare (goal ≥ 0.85)", result["ratio_pipeline_over_bare"]],
        ["backbone batch size reached in the pipeline (mean)", result["pipeline"]["backbone_batch_mean"]],
        ["bare model at batch 1 (reference)", result["bare"]["batch1_frames_per_s_mean"]],
        ["ratio pipeline / bare at batch 1", result["ratio_pipeline_over_bare_batch1"]],
    ]
    text = markdown_table(["frames/s", "value"], rows)
    offered = f"{lat['offered_frames_per_s']:.2f} frames/s ({100 * s['load_fraction']:.0f}% of capacity)"
    text += "\n\n" + markdown_table(
        [f"latency at {offered}", "p50 ms", "p95 ms", "p99 ms"],
        [
            ["XADD → PersonEvent", ev["p50"], ev["p95"], ev["p99"]],
            ["XADD → FrameResult", fr["p50"], fr["p95"], fr["p99"]],
        ],
    )
    return text


def plots(result: dict[str, Any], out_dir: Path) -> list[Path]:
    s = result["settings"]
    bars = {
        "bare before": result["bare"]["before"]["frames_per_s"],
        "bare after": result["bare"]["after"]["frames_per_s"],
        "pipeline": result["pipeline"]["frames_per_s"],
    }
    title = (
        f"Pipeline vs bare model: {s['preset']} preset, {s['size']} px, "
        f"{s['persons_per_frame']} persons/frame, ratio {result['ratio_pipeline_over_bare']}"
    )
    path = plot_bars(
        out_dir / "pipeline_overhead.png", list(bars), list(bars.values()), ylabel="frames/s", title=title
    )
    return [path]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_common_args(parser, persons=5)
    parser.add_argument("--threads", type=int, default=None, help="default: the backbone replica's")
    parser.add_argument("--repeats", type=int, default=5, help="timed bare batches (each side of the run)")
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--load", type=float, default=0.5, help="offered load as a fraction of capacity")
    parser.add_argument("--latency-frames", type=int, default=40)
    add_output_args(parser, "pipeline_overhead")
    args = parse_bench_args(parser, argv)
    if not 0 < args.load < 1:
        parser.error("--load must be in (0, 1): below capacity")
    return args


def main(argv: list[str] | None = None) -> dict[str, Any]:
    return run_benchmark(parse_args(argv), measure, markdown, plots)


if __name__ == "__main__":
    main()
