"""What every benchmark shares: thread pinning, timing (warm-up + repeats → median and IQR), the record of
the machine a figure came from, the benchmark model (a workload of exactly P persons per frame), the
synthetic frames, the JSON / Markdown / PNG writers, and the command line every benchmark's ``main`` runs.

Figures, not pass/fail: they depend on the machine and on whatever else runs on it, so every result file
carries the environment (commit included), the load average before, during and after the run, whether the
machine was idle when it started (load average ≤ 0.5 × cores), and the spread over repeats. Where two sides
are compared they take turns (``side_order``) and both report CPU-seconds per frame beside wall time
(``CpuClock``, ``tree_cpu_s``), so a side that spreads over more cores is not flattered by wall time alone.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import random
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "bench" / "results"
SEED = 0  # the benchmark model's weights: the same network on every run
IDLE_LOAD_PER_CORE = 0.5  # a 1-minute load average above this × cores at the start: "machine not idle"


# ---------------------------------------------------------------------------------------------- threads
def pin_threads(threads: int) -> int:
    """Intra-op torch threads of this process (what a Ray actor with ``num_cpus`` < 2 gets is 1)."""
    import torch

    if threads < 1:
        raise ValueError(f"threads must be >= 1, got {threads}")
    torch.set_num_threads(threads)
    return torch.get_num_threads()


# ---------------------------------------------------------------------------------------------- timing
@dataclass(frozen=True)
class Timing:
    samples_ms: tuple[float, ...]

    @property
    def median_ms(self) -> float:
        return statistics.median(self.samples_ms)

    def quartiles(self) -> tuple[float, float]:
        q1, q3 = np.percentile(np.asarray(self.samples_ms), [25, 75])
        return float(q1), float(q3)

    def summary(self) -> dict[str, Any]:
        q1, q3 = self.quartiles()
        median = self.median_ms
        return {
            "median_ms": round(median, 2),
            "q1_ms": round(q1, 2),
            "q3_ms": round(q3, 2),
            "iqr_ms": round(q3 - q1, 2),
            "min_ms": round(min(self.samples_ms), 2),
            "max_ms": round(max(self.samples_ms), 2),
            # the spread over repeats, relative: IQR / median
            "spread_pct": round(100.0 * (q3 - q1) / median, 1) if median > 0 else None,
            "repeats": len(self.samples_ms),
            "samples_ms": [round(s, 2) for s in self.samples_ms],
        }


def side_order(sides: Sequence[str], repeat: int, mode: str = "alternate", seed: int = SEED) -> list[str]:
    """The order the compared sides run in during repeat ``repeat``: ``alternate`` rotates them (two sides:
    A B, B A, A B, …), ``shuffle`` draws a seeded permutation per repeat. Either way no side always runs
    first (after the other's warm caches) or last (into a load spike), as a fixed order would."""
    order = list(sides)
    if mode == "alternate":
        shift = repeat % len(order) if order else 0
        return order[shift:] + order[:shift]
    if mode == "shuffle":
        random.Random(seed * 1_000_003 + repeat).shuffle(order)
        return order
    raise ValueError(f"order must be 'alternate' or 'shuffle', got {mode!r}")


def time_call(fn: Callable[[], object], *, warmup: int = 1, repeats: int = 5) -> Timing:
    """Run ``fn`` ``warmup`` times untimed, then ``repeats`` times timed (wall clock, ms)."""
    if repeats < 1:
        raise ValueError(f"repeats must be >= 1, got {repeats}")
    for _ in range(warmup):
        fn()
    samples = []
    for _ in range(repeats):
        started = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - started) * 1000.0)
    return Timing(tuple(samples))


def percentiles(values: Sequence[float], qs: Sequence[float] = (50, 95, 99)) -> dict[str, float | None]:
    if not values:
        return {f"p{q:g}": None for q in qs}
    found = np.percentile(np.asarray(values, dtype=np.float64), list(qs))
    return {f"p{q:g}": round(float(v), 1) for q, v in zip(qs, found, strict=True)}


def usable_cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def machine_idle(load1: float, cores: int | None = None) -> bool:
    """Whether a 1-minute load average leaves the machine idle enough to measure on (≤ 0.5 × cores)."""
    return load1 <= IDLE_LOAD_PER_CORE * (cores or usable_cores())


def wait_until_idle(max_wait_s: float, poll_s: float = 5.0) -> dict[str, Any]:
    """Wait (up to ``max_wait_s``) for the 1-minute load average to settle to idle, so that a benchmark
    does not start on the load of the one before it; says how long it waited and whether it got there."""
    started = time.monotonic()
    while not machine_idle(os.getloadavg()[0]) and time.monotonic() - started < max_wait_s:
        time.sleep(poll_s)
    load1 = os.getloadavg()[0]
    return {"waited_s": round(time.monotonic() - started, 1), "load1": load1, "idle": machine_idle(load1)}


class LoadMonitor:
    """Samples the 1-minute load average in the background while a benchmark runs; records the load
    averages before and after, and says when the machine was not idle at the start (and warns then)."""

    def __init__(self, interval_s: float = 5.0) -> None:
        self.interval_s = interval_s
        self.samples: list[float] = []
        self.before: tuple[float, float, float] = os.getloadavg()
        self.after: tuple[float, float, float] | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="load-monitor", daemon=True)

    def _run(self) -> None:
        while True:
            self.samples.append(os.getloadavg()[0])
            if self._stop.wait(self.interval_s):
                return

    def __enter__(self) -> LoadMonitor:
        self.before = os.getloadavg()
        if not machine_idle(self.before[0]):
            print(
                f"warning: the machine is not idle (load average {self.before[0]:.2f} on {usable_cores()} "
                "cores): these figures measure a shared machine",
                file=sys.stderr,
                flush=True,
            )
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=self.interval_s + 1)
        self.after = os.getloadavg()
        self.samples.append(self.after[0])

    def summary(self) -> dict[str, Any]:
        values = self.samples or [os.getloadavg()[0]]
        cores = usable_cores()
        after = self.after or os.getloadavg()
        idle = machine_idle(self.before[0], cores)
        return {
            "load1_mean": round(statistics.fmean(values), 2),
            "load1_max": round(max(values), 2),
            "samples": len(values),
            "load_average_before": [round(v, 2) for v in self.before],
            "load_average_after": [round(v, 2) for v in after],
            "cores": cores,
            "idle_threshold_load1": round(IDLE_LOAD_PER_CORE * cores, 2),
            "machine_idle_at_start": idle,
            "warning": None
            if idle
            else f"machine not idle at the start: load average {self.before[0]:.2f} > "
            f"{IDLE_LOAD_PER_CORE} x {cores} cores; not a figure for the README",
        }


# ---------------------------------------------------------------------------------------------- machine
def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _git(*words: str) -> str | None:
    try:
        out = subprocess.run(["git", *words], cwd=REPO, capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip() if out.returncode == 0 else None


def _git_commit() -> str | None:
    return _git("rev-parse", "--short", "HEAD") or None


def git_provenance() -> dict[str, Any]:
    """The commit a figure belongs to, and whether tracked files differed from it (then the figure is of
    that commit plus uncommitted edits: the README takes figures of a clean tree only)."""
    # bench/results/ holds figures, not code: writing them must not mark the next figure dirty
    changed = _git("status", "--porcelain", "--untracked-files=no", "--", ".", ":(exclude)bench/results")
    return {
        "git_commit": _git_commit(),
        "git_commit_full": _git("rev-parse", "HEAD") or None,
        "git_dirty": bool(changed) if changed is not None else None,
        "git_changed_files": len(changed.splitlines()) if changed else 0,
    }


def environment() -> dict[str, Any]:
    """Where and with what a figure was measured."""
    import psutil
    import torch
    import torchvision

    try:
        import ray

        ray_version = ray.__version__
    except ImportError:  # pragma: no cover - ray is a dependency
        ray_version = None
    return {
        "when": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "cpu": _cpu_model(),
        "cpu_count_logical": os.cpu_count(),
        "cpu_count_physical": psutil.cpu_count(logical=False),
        "cpus_usable": usable_cores(),
        "memory_gib": round(psutil.virtual_memory().total / 2**30, 1),
        "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "python": sys.version.split()[0],
        "torch": torch.__version__,
        "torchvision": torchvision.__version__,
        "ray": ray_version,
        "torch_threads": torch.get_num_threads(),
        # when environment() is called (some benches call it at the end): LoadMonitor's "before" is the start
        "load_average_at_start": [round(v, 2) for v in os.getloadavg()],
        **git_provenance(),
    }


# ---------------------------------------------------------------------------------------------- model
def forced_persons_config(preset: str, size: int, persons: int, **overrides: Any) -> Any:
    """The preset at ``size``×``size`` px whose detector reports exactly ``persons`` boxes per frame.

    An untrained detector scores every anchor ≈ 0.01, below the thresholds, and would report nobody, so
    PRN and activity would never run. With both score thresholds at 0 the detector keeps its top-P boxes
    after NMS: the full per-person work (PRN on P boxes, activity on P persons) runs on every frame, as
    it would for a trained model seeing P people. The PRN is the network (as with a trained checkpoint),
    not the untrained nearest-peak fallback.
    """
    from model.config import ModelConfig

    return ModelConfig.preset(
        preset,
        input_size=(size, size),
        candidate_score_threshold=0.0,
        person_score_threshold=0.0,
        max_persons=persons,
        prn_assignment="network",
        **overrides,
    )


def build_model(config: Any, checkpoint: str | Path | None = None) -> Any:
    """A MultiPoseNet of ``config``: the weights of ``checkpoint`` when given, else seeded random ones."""
    import torch

    from model.checkpoint import load_checkpoint
    from model.multiposenet import MultiPoseNet

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(SEED)
        model = MultiPoseNet(config)
    if checkpoint is not None:
        trained, _ = load_checkpoint(checkpoint)
        model.load_state_dict(trained.state_dict())
        model.trained_parts = set(trained.trained_parts)
    return model.eval()


def write_bench_checkpoint(config: Any, path: Path, checkpoint: str | Path | None = None) -> Path:
    """The benchmark model as a checkpoint file, so that Serve replicas load exactly this network."""
    from model.checkpoint import save_checkpoint

    model = build_model(config, checkpoint)
    size = config.input_size[0]
    version = f"bench-{config.preset_name}-{size}px-{config.max_persons}p"
    return save_checkpoint(path, model, version=version)


def synthetic_frames(count: int, size: int, people: int = 3, seed: int = SEED) -> list[np.ndarray]:
    """``count`` frames (size×size BGR uint8) of the synthetic multi-person sequence (model.data)."""
    from model.data.sequence import iter_sequence_frames

    return [frame for frame, _ in iter_sequence_frames(count, people, seed, size=(size, size))]


# ---------------------------------------------------------------------------------------------- writers
def write_json(path: Path, data: Any) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2) + "\n")
    return path


def markdown_table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    def cell(value: object) -> str:
        if value is None:
            return "–"
        if isinstance(value, float):
            if abs(value) < 10:
                return f"{value:.2f}"
            return f"{value:.1f}" if abs(value) < 1000 else f"{value:.0f}"
        return str(value)

    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_lines(
    path: Path,
    series: dict[str, tuple[Sequence[float], Sequence[float], Sequence[tuple[float, float]] | None]],
    *,
    xlabel: str,
    ylabel: str,
    title: str,
    logy: bool = False,
) -> Path:
    """One line per series: name → (xs, ys, optional (low, high) per point drawn as a band, e.g. the IQR)."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6.4, 4.0), dpi=110)
    for name, (xs, ys, bands) in series.items():
        (line,) = ax.plot(xs, ys, marker="o", label=name)
        if bands:
            low, high = [b[0] for b in bands], [b[1] for b in bands]
            ax.fill_between(xs, low, high, alpha=0.2, color=line.get_color())
    if logy:
        ax.set_yscale("log")
    else:
        ax.set_ylim(bottom=0)
    ticks = sorted({x for xs, _, _ in series.values() for x in xs})
    if ticks and len(ticks) <= 12:
        ax.set_xticks(ticks)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=10)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path


def plot_bars(path: Path, labels: Sequence[str], values: Sequence[float], *, ylabel: str, title: str) -> Path:
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6.4, 4.0), dpi=110)
    bars = ax.bar(range(len(values)), values, color="tab:blue")
    ax.set_xticks(range(len(labels)), labels, fontsize=8)
    for bar, value in zip(bars, values, strict=True):
        top = (bar.get_x() + bar.get_width() / 2, bar.get_height())
        text = f"{value:.2f}" if abs(value) < 10 else f"{value:.1f}"
        ax.annotate(text, top, ha="center", va="bottom", fontsize=8)
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=10)
    ax.grid(True, axis="y", alpha=0.3)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path


# ---------------------------------------------------------------------------------------------- command line
def add_output_args(parser: argparse.ArgumentParser, name: str) -> None:
    """``--out`` (default ``bench/results/<name>.json``; the plots go beside it) and ``--no-plot``."""
    parser.add_argument("--out", type=Path, default=RESULTS / f"{name}.json")
    parser.add_argument("--no-plot", dest="plot", action="store_false")


def parse_bench_args(parser: argparse.ArgumentParser, argv: list[str] | None) -> argparse.Namespace:
    """``parser``'s arguments, with ``args.argv``: the words as given, for the result's ``command``."""
    args = parser.parse_args(argv)
    args.argv = list(argv) if argv is not None else sys.argv[1:]
    return args


def run_benchmark(
    args: argparse.Namespace,
    measure: Callable[[argparse.Namespace], dict[str, Any]],
    markdown: Callable[[dict[str, Any]], str],
    plots: Callable[[dict[str, Any], Path], list[Path]],
) -> dict[str, Any]:
    """Measure, plot beside ``args.out`` (unless ``--no-plot``), write the JSON, print the tables."""
    result = measure(args)
    if args.plot:
        result["plots"] = [str(p) for p in plots(result, args.out.parent)]
    write_json(args.out, result)
    print(markdown(result))
    print(f"wrote {args.out}")
    return result
