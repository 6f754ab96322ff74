"""Scaling: throughput with 1 vs. 2 replicas of each CPU stage, and memory per replica.

    .venv/bin/python -m bench.replica_scaling [--size 256] [--persons 10] [--frames 48]

One local stack (embedded Redis, local Ray, ``deploy/serve_config.yaml`` with the benchmark checkpoint:
see ``bench.pipeline_overhead``) is redeployed in place with fixed replica counts per variant: all stages
at 1, then PoseResidual ×2, ActivityClassifier ×2, PoseBackbone ×2 (on a CPU-only machine the backbone is
a CPU stage too) and all three ×2. The FrameConsumer stays at 1 (one shard: more consumers only stand by).
Each variant's frames/s is measured as in ``bench.pipeline_overhead`` (frames XADDed back to back, results
after the warm-up frames counted), with the replicas' CPU use (cores) over the run. Memory per replica:
RSS, USS (pages only this process holds) and PSS of each replica process (psutil). Ray is told
``max(cpu count, what the biggest variant asks for)`` logical CPUs so that every replica can be placed;
each replica still gets max(floor(num_cpus), 1) = 1 torch thread.
"""

from __future__ import annotations

import argparse
import math
import os
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.common import (
    LoadMonitor,
    add_output_args,
    environment,
    forced_persons_config,
    markdown_table,
    parse_bench_args,
    plot_bars,
    run_benchmark,
    write_bench_checkpoint,
)
from bench.stack import (
    STAGES,
    add_common_args,
    bench_stack,
    config_numbers,
    cores_used,
    deploy_config,
    encoded_frames,
    in_flight_of,
    replicas_info,
    throughput,
)

CPU_STAGES = ("PoseBackbone", "PoseResidual", "ActivityClassifier")
VARIANTS: dict[str, dict[str, int]] = {
    "all ×1": {},
    "PoseResidual ×2": {"PoseResidual": 2},
    "ActivityClassifier ×2": {"ActivityClassifier": 2},
    "PoseBackbone ×2": {"PoseBackbone": 2},
    "all three ×2": {"PoseBackbone": 2, "PoseResidual": 2, "ActivityClassifier": 2},
}


def counts(variant: dict[str, int]) -> dict[str, int]:
    return {"FrameConsumer": 1, **{stage: variant.get(stage, 1) for stage in CPU_STAGES}}


def wait_for_replicas(wanted: dict[str, int], timeout_s: float) -> dict[str, list[dict[str, Any]]]:
    """Until each deployment runs exactly the wanted number of replica processes (old ones drained)."""
    deadline = time.monotonic() + timeout_s
    while True:
        found = replicas_info()
        if all(len(found[name]) == n for name, n in wanted.items()):
            return found
        if time.monotonic() > deadline:
            seen = {name: len(found[name]) for name in wanted}
            raise TimeoutError(f"replicas {seen} != {wanted} after {timeout_s} s")
        time.sleep(0.5)


def memory_summary(replicas: dict[str, list[dict[str, Any]]]) -> dict[str, dict[str, float]]:
    out = {}
    for name, found in replicas.items():
        if found:
            out[name] = {
                key: round(statistics.fmean(r[key] for r in found), 1)
                for key in ("rss_mib", "uss_mib", "pss_mib")
            }
    return out


def measure(args: argparse.Namespace) -> dict[str, Any]:
    from workers.serve.app import deploy_config_file, load_deploy_config

    config = forced_persons_config(
        args.preset, args.size, args.persons, nms_iou_threshold=1.0, candidates_per_level=100
    )
    variants = {name: VARIANTS[name] for name in args.variants}
    rows = []
    with tempfile.TemporaryDirectory(prefix="posestream-bench-") as folder, LoadMonitor() as load:
        folder = Path(folder)
        checkpoint = write_bench_checkpoint(config, folder / "bench.pt", args.checkpoint)
        jpegs, _ = encoded_frames(args.distinct_frames, args.size, args.scene_people)
        first = deploy_config(folder / "variant-0.yaml", checkpoint, counts({}))
        numbers = config_numbers(first)
        wanted_cpus = max(
            sum(numbers[name]["num_cpus"] * n for name, n in counts(v).items()) for v in variants.values()
        )
        num_cpus = max(os.cpu_count() or 1, math.ceil(wanted_cpus))
        with bench_stack(first, num_cpus=num_cpus, in_flight=args.in_flight) as stack:
            in_flight = in_flight_of(stack)
            for index, (name, variant) in enumerate(variants.items()):
                wanted = counts(variant)
                path = deploy_config(folder / f"variant-{index}.yaml", checkpoint, wanted, stack.settings)
                deploy_config_file(load_deploy_config(path), timeout_s=args.timeout)
                before = wait_for_replicas(wanted, args.timeout)
                started = time.monotonic()
                result = throughput(stack, jpegs, args.frames, args.warmup_frames, args.timeout)
                after = replicas_info()
                row = {
                    "load1_at_end": round(os.getloadavg()[0], 2),
                    "variant": name,
                    "replicas": wanted,
                    **result,
                    "cores_used": cores_used(before, after, time.monotonic() - started),
                    "memory_per_replica_mib": memory_summary(after),
                }
                rows.append(row)
                print(
                    f"{name:<24} {row['frames_per_s']:>7.2f} frames/s  cores {row['cores_used']}", flush=True
                )
    base = rows[0]["frames_per_s"]
    for row in rows:
        row["speedup_vs_first"] = round(row["frames_per_s"] / base, 3)
    return {
        "benchmark": "replica_scaling",
        "command": "python -m bench.replica_scaling " + " ".join(args.argv),
        "settings": {
            "preset": args.preset,
            "size": args.size,
            "persons_per_frame": args.persons,
            "frames": args.frames,
            "warmup_frames": args.warmup_frames,
            "ray_logical_cpus": num_cpus,
            "consumer_in_flight": in_flight,
            "deploy": numbers,
        },
        "environment": environment(),
        "load": load.summary(),
        "rows": rows,
    }


def markdown(result: dict[str, Any]) -> str:
    rows = result["rows"]
    table = markdown_table(
        ["replicas", "frames/s", "× all-1", "cores used (backbone / PRN / activity / consumer)"],
        [
            [
                r["variant"],
                r["frames_per_s"],
                r["speedup_vs_first"],
                " / ".join(str(r["cores_used"].get(s)) for s in (*CPU_STAGES, "FrameConsumer")),
            ]
            for r in rows
        ],
    )
    memory = rows[0]["memory_per_replica_mib"]
    table += "\n\n" + markdown_table(
        ["memory per replica (MiB)", "RSS", "USS (own pages)", "PSS"],
        [
            [name, *(memory[name][k] for k in ("rss_mib", "uss_mib", "pss_mib"))]
            for name in STAGES
            if name in memory
        ],
    )
    return table


def plots(result: dict[str, Any], out_dir: Path) -> list[Path]:
    s = result["settings"]
    title = f"Replica scaling: {s['preset']} preset, {s['size']} px, {s['persons_per_frame']} persons/frame"
    rows = result["rows"]
    path = plot_bars(
        out_dir / "replica_scaling.png",
        [r["variant"].replace(" ×", "\n×") for r in rows],
        [r["frames_per_s"] for r in rows],
        ylabel="frames/s",
        title=title,
    )
    return [path]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_common_args(parser, persons=10)
    parser.add_argument("--variants", nargs="+", choices=list(VARIANTS), default=list(VARIANTS))
    add_output_args(parser, "replica_scaling")
    parser.set_defaults(frames=48, warmup_frames=8)
    args = parse_bench_args(parser, argv)
    if args.variants[0] != "all ×1":
        args.variants = ["all ×1", *(v for v in args.variants if v != "all ×1")]
    return args


def main(argv: list[str] | None = None) -> dict[str, Any]:
    return run_benchmark(parse_args(argv), measure, markdown, plots)


if __name__ == "__main__":
    main()
