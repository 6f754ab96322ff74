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
* bare — the same frames, decoded, through ``PosePipeline.predict`` (letterbox, backbone + heads, PRN,
  activity: the same code the stages call) in this process, on the whole machine: ``--threads`` torch
  threads (default every usable core, not the backbone replica's one) at its best batch size among
  ``--bare-batches`` (default 1, half and all of the backbone's ``max_batch_size``). Measured before the
  pipeline and after each of its ``--rounds`` (bare, pipeline, bare, pipeline, bare, …: each pipeline
  round sits between two bare ones), while the stack is up and idle; the ratio uses their mean.
* CPU-seconds per frame, both sides: the bare side's ``time.process_time`` (all its threads) over its
  frames; the pipeline's CPU time of every process involved (replicas, Redis, Ray's daemons and workers,
  this process's publisher and subscriber: ``bench.cputime``) over the frames it served. Wall frames/s
  flatters whichever side is given more cores; CPU-s / frame does not.
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
    Timing,
    add_output_args,
    environment,
    forced_persons_config,
    markdown_table,
    parse_bench_args,
    pin_threads,
    plot_bars,
    run_benchmark,
    usable_cores,
    write_bench_checkpoint,
)
from bench.cputime import CpuClock, cpu_delta, tree_cpu_s
from bench.stack import (
    CAMERAS,
    add_common_args,
    backbone_batches,
    bench_stack,
    config_numbers,
    consumer_state,
    cores_used,
    deploy_config,
    deployed_settings,
    encoded_frames,
    latency,
    ray_torch_threads,
    replicas_info,
    throughput,
)


def bare_forward(
    pipeline: Any, frames: Sequence[np.ndarray], batches: Sequence[int], warmup: int, repeats: int
) -> dict:
    """``PosePipeline.predict`` on one batch of each size in ``batches``: frames/s and CPU-s / frame each;
    the best batch's figures on top (the bare model at its best, as the issue asks of a reference)."""
    by_batch = {}
    for batch in batches:
        images = [frames[i % len(frames)] for i in range(batch)]
        for _ in range(warmup):
            pipeline.predict(images)
        samples, cpu_s = [], 0.0
        for _ in range(repeats):
            with CpuClock() as clock:
                pipeline.predict(images)
            samples.append(clock.wall_s * 1000.0)
            cpu_s += clock.cpu_s
        timing = Timing(tuple(samples))
        by_batch[batch] = {
            "batch": batch,
            "frames_per_s": round(batch / (timing.median_ms / 1000), 3),
            "cpu_s_per_frame": round(cpu_s / (repeats * batch), 4),
            "predict": timing.summary(),
        }
    best = max(by_batch.values(), key=lambda row: row["frames_per_s"])
    return {
        "batch": best["batch"],
        "frames_per_s": best["frames_per_s"],
        "cpu_s_per_frame": best["cpu_s_per_frame"],
        "batch1_frames_per_s": by_batch[min(by_batch)]["frames_per_s"],
        "by_batch": [by_batch[b] for b in sorted(by_batch)],
    }


def pipeline_round(stack: Any, jpegs: Sequence[bytes], args: argparse.Namespace) -> dict[str, Any]:
    """One throughput run, with the CPU seconds every process of the stack spent on it."""
    batches_before = len(backbone_batches())
    replicas_before, cpu_before, started = replicas_info(), tree_cpu_s(), time.monotonic()
    pipe = throughput(stack, jpegs, args.frames, args.warmup_frames, args.timeout)
    cpu_after, replicas = tree_cpu_s(), replicas_info()
    pipe["cores_used"] = cores_used(replicas_before, replicas, time.monotonic() - started)
    spent = cpu_delta(cpu_before, cpu_after)
    served = args.frames + args.warmup_frames  # the CPU time covers the warm-up frames too
    pipe["cpu_s_by_process"] = spent
    pipe["cpu_s_per_frame"] = round(sum(spent.values()) / served, 4)
    pipe["cpu_s_per_frame_model_stages"] = round(
        sum(v for k, v in spent.items() if k.startswith("replica:") and k != "replica:FrameConsumer")
        / served,
        4,
    )
    pipe["backbone_batch_sizes"] = sizes = backbone_batches()[batches_before:]
    pipe["backbone_batch_mean"] = round(float(np.mean(sizes)), 2) if sizes else None
    pipe["replicas"] = replicas
    print(f"pipeline: {pipe['frames_per_s']} frames/s {pipe['statuses']}", flush=True)
    return pipe


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
        bare_batches = sorted(set(args.bare_batches or [1, max(batch // 2, 1), batch]))
        jpegs, decoded = encoded_frames(args.distinct_frames, args.size, args.scene_people)
        backbone_threads = ray_torch_threads(numbers["PoseBackbone"]["num_cpus"])
        threads = pin_threads(args.threads or usable_cores())
        with bench_stack(config_path, in_flight=args.in_flight) as stack:
            bare_model = PosePipeline.load(checkpoint)
            bares = [bare_forward(bare_model, decoded, bare_batches, args.warmup, args.repeats)]
            print(f"bare: {bares[-1]['frames_per_s']} frames/s at batch {bares[-1]['batch']}", flush=True)
            rounds = []
            for _ in range(args.rounds):
                rounds.append(pipeline_round(stack, jpegs, args))
                bares.append(bare_forward(bare_model, decoded, bare_batches, args.warmup, args.repeats))
                print(f"bare: {bares[-1]['frames_per_s']} frames/s at batch {bares[-1]['batch']}", flush=True)
            deployed = deployed_settings(config_path, stack)
            deployed["consumer"] = consumer_state()
            pipe_fps = float(np.median([r["frames_per_s"] for r in rounds]))
            rate = args.load * pipe_fps
            lat = latency(stack, jpegs, args.latency_frames, rate, args.timeout)
            print(f"latency at {rate:.2f} frames/s: events {lat['event_latency_ms']}", flush=True)
    bare_fps = float(np.mean([b["frames_per_s"] for b in bares]))
    bare_batch1 = float(np.mean([b["batch1_frames_per_s"] for b in bares]))
    bare_cpu = float(np.mean([b["cpu_s_per_frame"] for b in bares]))
    pipe_cpu = float(np.median([r["cpu_s_per_frame"] for r in rounds]))
    last = rounds[-1]
    return {
        "benchmark": "pipeline_overhead",
        "command": "python -m bench.pipeline_overhead " + " ".join(args.argv),
        "settings": {
            "preset": args.preset,
            "size": args.size,
            "persons_per_frame": args.persons,
            "batch": batch,
            "bare_batches": bare_batches,
            "bare_torch_threads": threads,
            "torch_threads_both_sides": None,  # no longer equal: the bare side has the whole machine
            "backbone_replica_torch_threads": backbone_threads,
            "frames": args.frames,
            "warmup_frames": args.warmup_frames,
            "rounds": args.rounds,
            "order": "bare, then (pipeline, bare) x rounds: every pipeline round between two bare ones",
            "load_fraction": args.load,
            "consumer_in_flight": deployed["in_flight"],
            "deployed_settings": deployed,
            "cameras": len(CAMERAS),
            "deploy": numbers,
        },
        "environment": environment(),
        "load": load.summary(),
        "bare": {
            "runs": bares,
            "before": bares[0],
            "after": bares[-1],
            "frames_per_s_mean": round(bare_fps, 3),
            "frames_per_s_spread": [
                min(b["frames_per_s"] for b in bares),
                max(b["frames_per_s"] for b in bares),
            ],
            "batch1_frames_per_s_mean": round(bare_batch1, 3),
            "cpu_s_per_frame_mean": round(bare_cpu, 4),
        },
        "pipeline": {
            **{k: v for k, v in last.items() if k != "replicas"},
            "frames_per_s": round(pipe_fps, 3),
            "frames_per_s_rounds": [r["frames_per_s"] for r in rounds],
            "cpu_s_per_frame": round(pipe_cpu, 4),
            "cpu_s_per_frame_rounds": [r["cpu_s_per_frame"] for r in rounds],
        },
        "ratio_pipeline_over_bare": round(pipe_fps / bare_fps, 3),
        "ratio_pipeline_over_bare_batch1": round(pipe_fps / bare_batch1, 3),
        "ratio_cpu_s_per_frame_pipeline_over_bare": round(pipe_cpu / bare_cpu, 3),
        "ratio_goal": 0.85,
        "latency": lat,
        "replicas": last["replicas"],
    }


def markdown(result: dict[str, Any]) -> str:
    s, lat = result["settings"], result["latency"]
    ev, fr = lat["event_latency_ms"], lat["result_latency_ms"]
    bare = result["bare"]
    threads = s.get("bare_torch_threads") or s.get("torch_threads_both_sides")
    best_batch = bare["before"].get("batch", s["batch"])
    bare_label = f"bare model (PosePipeline.predict), {threads} thread(s), best batch {best_batch}"
    rows = [
        [bare_label, bare["frames_per_s_mean"]],
        ["Redis + Serve + PRN + activity", result["pipeline"]["frames_per_s"]],
        ["ratio pipeline / bare (goal ≥ 0.85)", result["ratio_pipeline_over_bare"]],
        ["CPU-s / frame: bare", bare.get("cpu_s_per_frame_mean")],
        ["CPU-s / frame: pipeline (every process involved)", result["pipeline"].get("cpu_s_per_frame")],
        ["ratio of CPU-s / frame, pipeline / bare", result.get("ratio_cpu_s_per_frame_pipeline_over_bare")],
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
    bars = {f"bare {i}": run["frames_per_s"] for i, run in enumerate(result["bare"]["runs"])}
    bars.update({f"pipeline {i}": fps for i, fps in enumerate(result["pipeline"]["frames_per_s_rounds"])})
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
    parser.add_argument("--threads", type=int, default=None, help="bare side; default: every usable core")
    parser.add_argument(
        "--bare-batches",
        type=int,
        nargs="+",
        default=None,
        help="default: 1, max_batch_size/2, max_batch_size",
    )
    parser.add_argument("--rounds", type=int, default=2, help="pipeline runs, each between two bare ones")
    parser.add_argument("--repeats", type=int, default=5, help="timed bare batches per size per bare run")
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
