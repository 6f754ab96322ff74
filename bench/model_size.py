"""Parameter counts per part and CPU forward time per 480-px frame for each backbone depth and the demo
preset, plus the demo preset's half-precision checkpoint size.

    .venv/bin/python bench/model_size.py [--iterations 5] [--threads N] [--out bench/results/model_size.json]

The time is one eval forward of ``MultiPoseNet`` on one 480×480 frame (backbone, both FPNs, both heads,
NMS and peak extraction; the untrained detector reports nobody, so PRN/activity costs are timed separately
on 10 persons with ``prn_ms_10_persons``). Times are the fastest of ``--iterations`` runs (medians in
the JSON). Figures, not pass/fail: they depend on the machine and its load.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from torch.utils.flop_counter import FlopCounterMode

from model.checkpoint import save_checkpoint
from model.config import ModelConfig
from model.multiposenet import PARTS, MultiPoseNet
from model.predictions import Detections

SUBMODULES = (
    "backbone",
    "keypoint_fpn",
    "keypoint_head",
    "detection_fpn",
    "detection_head",
    "prn",
    "activity",
)


def count(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def time_ms(fn, iterations: int) -> tuple[float, float]:
    """(fastest, median) of ``iterations`` runs after a warm-up; on a shared CPU the fastest is the figure
    least disturbed by other processes."""
    fn()
    samples = []
    for _ in range(iterations):
        started = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - started) * 1000)
    return min(samples), statistics.median(samples)


def measure(name: str, config: ModelConfig, iterations: int) -> dict[str, object]:
    torch.manual_seed(0)
    model = MultiPoseNet(config).eval()
    frame = torch.randn(1, 3, *config.input_size) * 50
    with torch.inference_mode():
        with FlopCounterMode(display=False) as counter:  # load-independent cost: multiply-adds
            model(frame)
        gmacs = counter.get_total_flops() / 2e9
        forward_ms = time_ms(lambda: model(frame), iterations)
        rng = np.random.default_rng(0)
        boxes = (
            np.sort(rng.uniform(0, 480, (10, 2, 2)), axis=1)
            .reshape(10, 4)[:, [0, 2, 1, 3]]
            .astype(np.float32)
        )
        peaks = np.concatenate(
            [
                rng.uniform(0, 480, (17, config.peak_top_k, 2)),
                rng.uniform(0.2, 1, (17, config.peak_top_k, 1)),
            ],
            -1,
        ).astype(np.float32)
        detections = [Detections(boxes, np.ones(10, np.float32), peaks, 480, 480)]
        prn_ms = time_ms(
            lambda: model.activity.classify(model.prn.assign(detections, use_network=True)), iterations
        )
    row: dict[str, object] = {
        "name": name,
        "backbone_depth": config.backbone_depth,
        "params": {part: count(getattr(model, part)) for part in SUBMODULES},
        "params_by_checkpoint_part": {
            part: sum(count(getattr(model, attr)) for attr in attrs) for part, attrs in PARTS.items()
        },
        "params_total": count(model),
        "gmacs_per_frame_480": round(gmacs, 1),
        "forward_ms_per_frame_480": round(forward_ms[0], 1),
        "forward_ms_per_frame_480_median": round(forward_ms[1], 1),
        "prn_ms_10_persons": round(prn_ms[0], 1),
        "prn_ms_10_persons_median": round(prn_ms[1], 1),
    }
    if name == "demo":
        with tempfile.TemporaryDirectory() as folder:
            path = save_checkpoint(Path(folder) / "demo.pt", model, version="bench", half=True)
            row["fp16_checkpoint_mb"] = round(path.stat().st_size / 2**20, 2)
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iterations", type=int, default=5)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "model_size.json")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    rows = [
        measure(f"resnet{d} (seed sizes)", ModelConfig.preset("default", backbone_depth=d), args.iterations)
        for d in (18, 34, 50, 101, 152)
    ]
    rows.append(measure("demo", ModelConfig.preset("demo"), args.iterations))
    columns = ("model", "params M", "backbone", "kp FPN+head", "det FPN+head", "PRN", "activity")
    widths = (24, 10, 10, 12, 13, 8, 9)
    print(
        "".join(
            f"{c:<{w}}" if i == 0 else f"{c:>{w}}"
            for i, (c, w) in enumerate(zip(columns, widths, strict=True))
        )
        + f"{'GMAC':>7}{'ms/frame':>10}{'PRN+act ms':>11}"
    )
    for row in rows:
        p = {k: v / 1e6 for k, v in row["params"].items()}
        values = (
            row["params_total"] / 1e6,
            p["backbone"],
            p["keypoint_fpn"] + p["keypoint_head"],
            p["detection_fpn"] + p["detection_head"],
            p["prn"],
            p["activity"],
        )
        line = f"{row['name']:<24}" + "".join(f"{v:>{w}.2f}" for v, w in zip(values, widths[1:], strict=True))
        timings = f"{row['forward_ms_per_frame_480']:>10.0f}{row['prn_ms_10_persons']:>11.0f}"
        print(f"{line}{row['gmacs_per_frame_480']:>7.1f}{timings}")
    demo = rows[-1]
    print(f"demo fp16 checkpoint: {demo['fp16_checkpoint_mb']} MB")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    result = {
        "machine": {
            "cpu": platform.processor() or platform.machine(),
            "threads": torch.get_num_threads(),
            "torch": torch.__version__,
        },
        "iterations": args.iterations,
        "rows": rows,
    }
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
