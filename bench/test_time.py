"""Cost of test-time augmentation: the backbone stage's time per frame at each setting, as a ratio to the
single view measured in the same run (this machine is shared: the ratio is the figure to read).

    .venv/bin/python -m bench.test_time [--size 480] [--frames 4] [--repeats 3] [--threads 2]
        [--checkpoint model/weights/demo.pt] [--out bench/results/test_time.json]

Timed: ``BackboneStage`` on one frame at a time (letterbox, every view's forward pass, heatmap merge, NMS,
peak extraction), the median over frames × repeats. PRN and activity cost the same with or without it.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from bench.common import (
    LoadMonitor,
    add_output_args,
    environment,
    markdown_table,
    parse_bench_args,
    pin_threads,
    run_benchmark,
    synthetic_frames,
    time_call,
)

SETTINGS: tuple[tuple[tuple[float, ...], bool], ...] = (
    ((1.0,), False),
    ((1.0,), True),
    ((1.0, 1.25), False),
    ((0.75, 1.0, 1.25), False),
    ((0.75, 1.0, 1.25), True),
)


def measure(args: argparse.Namespace) -> dict[str, Any]:
    from model.pipeline import PosePipeline
    from model.stages import BackboneStage
    from model.test_time import TestTimeAugmentation

    threads = pin_threads(args.threads)
    pipeline = PosePipeline.load(args.checkpoint, device="cpu")
    frames = synthetic_frames(args.frames, args.size)
    rows = []
    with LoadMonitor() as load:
        for scales, flip in SETTINGS:
            setting = TestTimeAugmentation(scales=scales, flip=flip)
            stage = BackboneStage(pipeline.model, "cpu", setting)
            samples: list[float] = []
            for frame in frames:
                timing = time_call(lambda f=frame, s=stage: s([f]), warmup=1, repeats=args.repeats)
                samples += timing.samples_ms
            samples.sort()
            median = samples[len(samples) // 2]
            views = len(scales) * (2 if flip else 1)
            rows.append({"setting": setting.describe(), "views": views, "median_ms": round(median, 1)})
            print(f"{setting.describe():28s} {median:8.1f} ms/frame", flush=True)
    baseline = rows[0]["median_ms"]
    for row in rows:
        row["ratio_to_single_view"] = round(row["median_ms"] / baseline, 2)
    return {
        "benchmark": "test_time",
        "settings": {"size": args.size, "frames": args.frames, "repeats": args.repeats, "threads": threads},
        "model_version": pipeline.model_version,
        "environment": environment(),
        "load": load.summary(),
        "rows": rows,
        "what_is_timed": "BackboneStage on one frame: letterbox, every view's forward, merge, NMS, peaks",
    }


def markdown(result: dict[str, Any]) -> str:
    rows = [(r["setting"], r["views"], r["median_ms"], r["ratio_to_single_view"]) for r in result["rows"]]
    return markdown_table(("setting", "views", "ms / frame", "× single view"), rows)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=480)
    parser.add_argument("--frames", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--checkpoint", type=Path, default=None)
    add_output_args(parser, "test_time")
    run_benchmark(parse_bench_args(parser, argv), measure, markdown, lambda result, folder: [])


if __name__ == "__main__":
    main()
