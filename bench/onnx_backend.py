"""The backbone stage on PyTorch vs ONNX Runtime: ms per frame at 480 px, batches of 1 and 4, same run.

    .venv/bin/python -m bench.onnx_backend [--size 480] [--batches 1 4] [--repeats 7] [--threads N]
        [--checkpoint model/weights/demo.pt] [--out bench/results/onnx_backend.json]

Timed per call, divided by the batch: the whole backbone stage (letterbox, network, NMS, peak extraction)
and, apart, the network pass alone on the preprocessed batch (torch: trunk + FPNs + heads; onnxruntime: the
exported graph), where the two backends differ. Both sides get the same threads (default: every core this
process may use; onnxruntime at ORT_ENABLE_ALL, intra-op threads = that number). The sides alternate
within each repeat (torch first on even repeats, onnxruntime first on odd ones), so a change in the load
of this shared machine falls on both; the load average is recorded.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path
from typing import Any

from bench.common import (
    LoadMonitor,
    Timing,
    add_output_args,
    environment,
    markdown_table,
    parse_bench_args,
    pin_threads,
    run_benchmark,
    synthetic_frames,
)

SIDES = ("torch", "onnxruntime")


def _model(checkpoint: Path | None, size: int) -> tuple[Any, str]:
    """The checkpoint's network (default: the demo) on a size×size canvas (not in the weights)."""
    from model.checkpoint import DEFAULT_CHECKPOINT, load_checkpoint
    from model.multiposenet import MultiPoseNet

    trained, meta = load_checkpoint(checkpoint or DEFAULT_CHECKPOINT)
    model = MultiPoseNet(trained.config.model_copy(update={"input_size": (size, size)}))
    model.load_state_dict(trained.state_dict())
    return model.eval(), str(meta["version"])


def _timed_ms(fn: Any) -> float:
    started = time.perf_counter()
    fn()
    return (time.perf_counter() - started) * 1000.0


def measure(args: argparse.Namespace) -> dict[str, Any]:
    import onnxruntime
    import torch

    from model.onnx_backend import OnnxBackboneStage
    from model.onnx_export import DetectorGraph
    from model.preprocess import preprocess
    from model.stages import BackboneStage

    threads = pin_threads(args.threads)
    model, version = _model(args.checkpoint, args.size)
    stages = {
        "torch": BackboneStage(model, "cpu"),
        "onnxruntime": OnnxBackboneStage(model, "cpu", threads=threads, model_version=version),
    }
    graph = DetectorGraph(model.detector()).eval()
    frames = synthetic_frames(max(args.batches), args.size)

    def calls(batch: int) -> dict[str, dict[str, Any]]:
        images = frames[:batch]
        tensor, _ = preprocess(images, model.config.input_size, model.config.pixel_mean_bgr)
        return {
            "torch": {"stage": lambda: stages["torch"](images), "network": lambda: graph(tensor)},
            "onnxruntime": {
                "stage": lambda: stages["onnxruntime"](images),
                "network": lambda: stages["onnxruntime"].module.raw_outputs(tensor),
            },
        }

    samples = {(b, side, part): [] for b in args.batches for side in SIDES for part in ("stage", "network")}
    with LoadMonitor() as load, torch.inference_mode():
        for batch in args.batches:
            work = calls(batch)
            for side in SIDES:
                for _ in range(args.warmup):
                    work[side]["stage"]()
            for repeat in range(args.repeats):
                for side in SIDES if repeat % 2 == 0 else SIDES[::-1]:
                    for part in ("stage", "network"):
                        samples[(batch, side, part)].append(_timed_ms(work[side][part]) / batch)
            print(f"batch {batch} done", flush=True)
    rows = []
    for batch in args.batches:
        row: dict[str, Any] = {"batch": batch}
        for side in SIDES:
            for part in ("stage", "network"):
                row[f"{side}_{part}"] = Timing(tuple(samples[(batch, side, part)])).summary()
        for part in ("stage", "network"):
            torch_ms = row[f"torch_{part}"]["median_ms"]
            row[f"torch_over_onnxruntime_{part}"] = round(
                torch_ms / row[f"onnxruntime_{part}"]["median_ms"], 2
            )
        rows.append(row)
    return {
        "benchmark": "onnx_backend",
        "settings": {
            "size": args.size,
            "batches": list(args.batches),
            "repeats": args.repeats,
            "warmup": args.warmup,
            "threads": threads,
            "onnxruntime_intra_op_threads": threads,
            "onnxruntime_graph_optimization": "ORT_ENABLE_ALL",
            "order": "alternating: torch first on even repeats, onnxruntime first on odd ones",
        },
        "command": ["python", "-m", "bench.onnx_backend", *args.argv],
        "model_version": version,
        "onnxruntime": onnxruntime.__version__,
        "providers": stages["onnxruntime"].providers,
        "environment": environment(),
        "load": load.summary(),
        "rows": rows,
        "what_is_timed": "ms per frame: the backbone stage (letterbox, network, NMS, peaks) and the network "
        "pass alone, per call / batch",
    }


def markdown(result: dict[str, Any]) -> str:
    rows = [
        (
            r["batch"],
            r["torch_stage"]["median_ms"],
            r["onnxruntime_stage"]["median_ms"],
            r["torch_over_onnxruntime_stage"],
            r["torch_network"]["median_ms"],
            r["onnxruntime_network"]["median_ms"],
            r["torch_over_onnxruntime_network"],
        )
        for r in result["rows"]
    ]
    headers = (
        "batch",
        "torch stage ms/frame",
        "ORT stage ms/frame",
        "torch/ORT",
        "torch net",
        "ORT net",
        "×",
    )
    load = result["load"]
    loads = f"load average (1 min) during the run: mean {load['load1_mean']}, max {load['load1_max']}"
    return f"{markdown_table(headers, rows)}\n\n{loads}"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=480)
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 4])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--threads", type=int, default=len(os.sched_getaffinity(0)))
    parser.add_argument("--checkpoint", type=Path, default=None)
    add_output_args(parser, "onnx_backend")
    run_benchmark(parse_bench_args(parser, argv), measure, markdown, lambda result, folder: [])


if __name__ == "__main__":
    main()
