"""Run every posestream benchmark and write ``bench/results/latest.json``, ``latest.md`` and the PNG plots.

    .venv/bin/python -m bench.run_all [--size 256] [--only pipeline_overhead people_scaling replica_scaling]
    .venv/bin/python -m bench.run_all --quick     # tiny settings: checks that everything runs (figures moot)

Each benchmark runs in its own process (a clean Ray, its own torch threads) with its defaults unless told
otherwise, and writes ``bench/results/<name>.json`` and ``<name>.png``; this script gathers them. ``make
bench`` runs it after ``bench/model_size.py``. Figures, not pass/fail: on a shared machine they move with
its load, which every result records.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from bench import people_scaling, pipeline_overhead, replica_scaling
from bench.common import REPO, RESULTS, LoadMonitor, environment, wait_until_idle, write_json

BENCHMARKS = {
    "pipeline_overhead": pipeline_overhead,
    "people_scaling": people_scaling,
    "replica_scaling": replica_scaling,
}
QUICK = {
    "pipeline_overhead": [
        "--frames",
        "8",
        "--warmup-frames",
        "2",
        "--latency-frames",
        "6",
        "--repeats",
        "2",
        "--rounds",
        "1",
    ],  # fmt: skip
    "people_scaling": ["--persons", "1", "2", "--repeats", "1", "--warmup", "0"],
    "replica_scaling": ["--frames", "6", "--warmup-frames", "2", "--variants", "all ×1", "PoseResidual ×2"],
}


def run_one(name: str, args: argparse.Namespace, out_dir: Path) -> dict[str, Any]:
    out = out_dir / f"{name}.json"
    shown = os.path.relpath(out, REPO) if out.resolve().is_relative_to(REPO) else str(out)
    command = [sys.executable, "-m", f"bench.{name}", "--size", str(args.size), "--out", shown]
    if args.quick:
        command += QUICK[name]
    if args.in_flight and name in ("pipeline_overhead", "replica_scaling"):
        command += ["--in-flight", str(args.in_flight)]
    # the previous benchmark's load decays over minutes (1-minute average): start each on a settled machine
    settled = wait_until_idle(args.settle_s) if args.settle_s > 0 else None
    print(f"== {name}: {' '.join(command[1:])} (settle: {settled})", flush=True)
    started = time.monotonic()
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])),
    }
    subprocess.run(command, cwd=REPO, env=env, check=True)
    result = json.loads(out.read_text())
    result["wall_s"] = round(time.monotonic() - started, 1)
    result["settle"] = settled
    return result


def markdown(summary: dict[str, Any]) -> str:
    env, load = summary["environment"], summary["load"]
    lines = [
        "# posestream benchmarks",
        "",
        f"`{summary['command']}` — {env['when']}, commit {env['git_commit']}"
        + (" plus uncommitted edits (not a README figure)" if env.get("git_dirty") else ""),
        "",
        f"Machine: {env['cpu']}, {env['cpu_count_physical']} physical / {env['cpu_count_logical']} logical "
        f"CPUs, {env['memory_gib']} GiB, GPU: {env['gpu'] or 'none'}; torch {env['torch']}, "
        f"torchvision {env['torchvision']}, Ray {env['ray']}. Load average (1 min) during the run: "
        f"mean {load['load1_mean']}, max {load['load1_max']}; before {load.get('load_average_before')}, "
        f"after {load.get('load_average_after')} (other processes share the CPUs: the figures move with it).",
    ]
    if load.get("warning"):
        lines += ["", f"**{load['warning']}**"]
    sections = {
        "pipeline_overhead": "Pipeline overhead and latency",
        "people_scaling": "Cost vs. people per frame (bottom-up vs. top-down)",
        "replica_scaling": "Replica scaling and memory",
    }
    for name, result in summary["results"].items():
        module = BENCHMARKS[name]
        settings = result["settings"]
        threads = settings.get("torch_threads_both_sides") or settings.get("threads")
        bare_threads = settings.get("bare_torch_threads")
        run_load = result["load"]
        lines += [
            "",
            f"## {sections[name]}",
            "",
            f"`{result['command']}` — {settings.get('size')} px"
            + (f", {threads} torch thread(s) on each side" if threads else "")
            + (f", bare side {bare_threads} torch thread(s) (the whole machine)" if bare_threads else "")
            + f", load average mean {run_load['load1_mean']} (before {run_load.get('load_average_before')}, "
            f"after {run_load.get('load_average_after')}), {result['wall_s']} s."
            + (f" **{run_load['warning']}**" if run_load.get("warning") else ""),
            "",
            module.markdown(result),
        ]
        lines += [f"\n![{name}]({Path(p).name})" for p in result.get("plots", [])]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--size", type=int, default=256, help="input side in px for every benchmark, e.g. 480"
    )
    parser.add_argument("--only", nargs="+", choices=list(BENCHMARKS), default=list(BENCHMARKS))
    parser.add_argument("--quick", action="store_true", help="tiny settings, to check that it all runs")
    parser.add_argument("--out-dir", type=Path, default=RESULTS)
    parser.add_argument(
        "--in-flight", type=int, default=None, help="consumer window for the stack benchmarks"
    )
    parser.add_argument(
        "--settle-s",
        type=float,
        default=None,
        help="most seconds to wait for an idle machine before each benchmark (default 300; --quick: 0)",
    )
    args = parser.parse_args(argv)
    if args.settle_s is None:
        args.settle_s = 0.0 if args.quick else 300.0
    if args.quick and args.size == 256:
        args.size = 64
    args.out_dir.mkdir(parents=True, exist_ok=True)
    command = "python -m bench.run_all " + " ".join(argv if argv is not None else sys.argv[1:])
    with LoadMonitor() as load:
        env = environment()
        results = {name: run_one(name, args, args.out_dir) for name in args.only}
    load_summary = load.summary()
    idle = load_summary["machine_idle_at_start"] and all(
        r["load"].get("machine_idle_at_start", False) for r in results.values()
    )
    summary = {
        "command": command.strip(),
        "environment": env,
        "load": load_summary,
        "machine_idle_throughout": idle,  # every benchmark started on an idle machine
        "results": results,
    }
    write_json(args.out_dir / "latest.json", summary)
    (args.out_dir / "latest.md").write_text(markdown(summary))
    print(markdown(summary))
    print(f"wrote {args.out_dir / 'latest.json'} and {args.out_dir / 'latest.md'}")
    return summary


if __name__ == "__main__":
    main()
