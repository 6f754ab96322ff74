"""The backbone stage on PyTorch vs ONNX Runtime (fp32, and static int8 with ``--int8``): ms per frame at 480
px, batches of 1 and 4, same run; with ``--ap-images N`` the keypoint AP of each on generated held-out scenes.

    .venv/bin/python -m bench.onnx_backend [--size 480] [--batches 1 4] [--repeats 7] [--threads N]
        [--int8 --calibration-images 64] [--ap-images 100]
        [--checkpoint model/weights/demo.pt] [--out bench/results/onnx_backend.json]
    .venv/bin/python -m bench.onnx_backend --smoke     # int8 on 4 calibration images, AP on 4: it runs

Timed per call, divided by the batch: the whole backbone stage (letterbox, network, NMS, peak extraction)
and, apart, the network pass alone on the preprocessed batch (torch: trunk + FPNs + heads; onnxruntime: the
exported graph), where the two backends differ. Both sides get the same threads (default: every core this
process may use; onnxruntime at ORT_ENABLE_ALL, intra-op threads = that number). The sides alternate
within each repeat (``side_order``: rotated, each side first in turn), so a change in the load of this
shared machine falls on all; CPU ms / frame (all threads) is reported beside wall ms; the load average is
recorded.

int8: the exported fp32 graph quantised by ``model.onnx_quantize`` (QDQ, per-channel int8 weights, uint8
activations, MinMax calibration on ``--calibration-images`` generated scenes of seed 21). AP: the three
sides at the evaluation thresholds (``model.evaluation.coco_eval.evaluation_pipeline``) over
``--ap-images`` scenes of seed 20 (neither the demo's training seed 0 nor the calibration seed), COCO
keypoint AP (OKS) and box AP; the change int8 − torch is the figure to quote.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Any

import numpy as np

from bench.common import (
    LoadMonitor,
    Timing,
    add_output_args,
    environment,
    markdown_table,
    parse_bench_args,
    pin_threads,
    run_benchmark,
    side_order,
    synthetic_frames,
)
from bench.cputime import CpuClock

SIDES = ("torch", "onnxruntime")
INT8 = "onnxruntime-int8"
AP_SEED = 20  # held-out scenes: not the demo's training seed (0) nor the calibration seed (21)


def _model(checkpoint: Path | None, size: int) -> tuple[Any, str]:
    """The checkpoint's network (default: the demo) on a size×size canvas (not in the weights)."""
    from model.checkpoint import DEFAULT_CHECKPOINT, load_checkpoint
    from model.multiposenet import MultiPoseNet

    trained, meta = load_checkpoint(checkpoint or DEFAULT_CHECKPOINT)
    model = MultiPoseNet(trained.config.model_copy(update={"input_size": (size, size)}))
    model.load_state_dict(trained.state_dict())
    return model.eval(), str(meta["version"])


def _timed_ms(fn: Any) -> tuple[float, float]:
    """(wall ms, CPU ms of this process's threads) of one call."""
    with CpuClock() as clock:
        fn()
    return clock.wall_s * 1000.0, clock.cpu_s * 1000.0


def int8_export(model: Any, version: str, folder: Path, calibration_images: int) -> Path:
    """The backbone graph exported and quantised to static int8 into ``folder``."""
    from model.onnx_export import export_onnx
    from model.onnx_quantize import quantize_backbone

    export_onnx(model, folder, version, graphs=("backbone",))
    quantize_backbone(folder, model, calibration_images)
    return folder


class _PredictOnly:
    """A pipeline ``evaluate_pipeline`` runs as it is (it rebuilds one that has ``model`` as torch)."""

    def __init__(self, pipeline: Any) -> None:
        self.pipeline = pipeline
        self.model_version = pipeline.model_version
        self.trained_parts = pipeline.trained_parts

    def predict(self, images: Any) -> Any:
        return self.pipeline.predict(images)


def keypoint_ap(model: Any, version: str, sides: dict[str, Path | None], images: int, size: int) -> dict:
    """COCO keypoint / box AP of each side (torch; onnx sides: their export folder) on ``images`` generated
    held-out scenes, at the evaluation thresholds; the int8 − torch change."""
    import tempfile

    from model.data.synth import generate_dataset
    from model.evaluation.coco_eval import evaluate_pipeline, evaluation_pipeline
    from model.pipeline import PosePipeline

    view = evaluation_pipeline(PosePipeline(model, version, "cpu"))
    out: dict[str, Any] = {"images": images, "seed": AP_SEED, "size": size}
    with tempfile.TemporaryDirectory(prefix="posestream-ap-") as data:
        generate_dataset(data, images, AP_SEED, val_fraction=0.0, size=(size, size), progress=False)
        for side, folder in sides.items():
            if side == "torch":
                pipeline = view
            else:
                pipeline = PosePipeline(view.model, version, "cpu", backend="onnx", onnx_dir=folder)
            summary = evaluate_pipeline(_PredictOnly(pipeline), data, split="train", batch_size=4)
            out[side] = {"keypoint_ap": summary["keypoints"]["AP"], "box_ap": summary["bbox"]["AP"]}
            print(f"AP {side}: {out[side]}", flush=True)
    for side in sides:
        if side != "torch":
            out[f"{side}_minus_torch_keypoint_ap"] = round(
                out[side]["keypoint_ap"] - out["torch"]["keypoint_ap"], 4
            )
            out[f"{side}_minus_torch_box_ap"] = round(out[side]["box_ap"] - out["torch"]["box_ap"], 4)
    return out


def measure(args: argparse.Namespace) -> dict[str, Any]:
    import contextlib
    import tempfile

    import onnxruntime
    import torch

    from model.onnx_backend import OnnxBackboneStage, graph_differences
    from model.onnx_export import DetectorGraph
    from model.preprocess import preprocess
    from model.stages import BackboneStage

    threads = pin_threads(args.threads)
    # Watch the load from before the export and calibration: started after them, it read their load
    # as the machine's and called an idle machine busy.
    watched = contextlib.ExitStack()
    load = watched.enter_context(LoadMonitor())
    model, version = _model(args.checkpoint, args.size)
    stages = {
        "torch": BackboneStage(model, "cpu"),
        "onnxruntime": OnnxBackboneStage(model, "cpu", threads=threads, model_version=version),
    }
    sides = list(SIDES)
    scratch = tempfile.TemporaryDirectory(prefix="posestream-int8-")
    int8_dir = None
    if args.int8:
        int8_dir = int8_export(model, version, Path(scratch.name), args.calibration_images)
        stages[INT8] = OnnxBackboneStage(
            model, "cpu", graph_dir=int8_dir, threads=threads, model_version=version
        )
        sides.append(INT8)
    graph = DetectorGraph(model.detector()).eval()
    frames = synthetic_frames(max(args.batches), args.size)

    def calls(batch: int) -> dict[str, dict[str, Any]]:
        images = frames[:batch]
        tensor, _ = preprocess(images, model.config.input_size, model.config.pixel_mean_bgr)
        work = {"torch": {"stage": lambda: stages["torch"](images), "network": lambda: graph(tensor)}}
        for side in sides[1:]:
            stage = stages[side]
            work[side] = {
                "stage": lambda s=stage: s(images),
                "network": lambda s=stage: s.module.raw_outputs(tensor),
            }
        return work

    keys = [(b, side, part) for b in args.batches for side in sides for part in ("stage", "network")]
    samples: dict[tuple, list[float]] = {key: [] for key in keys}
    cpu: dict[tuple, list[float]] = {key: [] for key in keys}
    with watched, torch.inference_mode():
        for batch in args.batches:
            work = calls(batch)
            for side in sides:
                for _ in range(args.warmup):
                    work[side]["stage"]()
            for repeat in range(args.repeats):
                for side in side_order(sides, repeat):
                    for part in ("stage", "network"):
                        wall_ms, cpu_ms = _timed_ms(work[side][part])
                        samples[(batch, side, part)].append(wall_ms / batch)
                        cpu[(batch, side, part)].append(cpu_ms / batch)
            print(f"batch {batch} done", flush=True)
        differences = graph_differences(model, int8_dir)["backbone"] if int8_dir else None
        ap = None
        if args.ap_images:
            ap_sides = {"torch": None, "onnxruntime": None, **({INT8: int8_dir} if int8_dir else {})}
            ap = keypoint_ap(model, version, ap_sides, args.ap_images, args.size)
    scratch.cleanup()
    rows = []
    for batch in args.batches:
        row: dict[str, Any] = {"batch": batch}
        for side in sides:
            for part in ("stage", "network"):
                row[f"{side}_{part}"] = Timing(tuple(samples[(batch, side, part)])).summary()
                row[f"{side}_{part}"]["cpu_ms_median"] = round(float(np.median(cpu[(batch, side, part)])), 2)
        for part in ("stage", "network"):
            torch_ms = row[f"torch_{part}"]["median_ms"]
            row[f"torch_over_onnxruntime_{part}"] = round(
                torch_ms / row[f"onnxruntime_{part}"]["median_ms"], 2
            )
            if INT8 in sides:
                row[f"torch_over_int8_{part}"] = round(torch_ms / row[f"{INT8}_{part}"]["median_ms"], 2)
                row[f"fp32_over_int8_{part}"] = round(
                    row[f"onnxruntime_{part}"]["median_ms"] / row[f"{INT8}_{part}"]["median_ms"], 2
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
            "order": "rotated: each side first in turn, one repeat after the other",
            "sides": sides,
            "int8_calibration_images": args.calibration_images if args.int8 else None,
        },
        "command": ["python", "-m", "bench.onnx_backend", *args.argv],
        "model_version": version,
        "onnxruntime": onnxruntime.__version__,
        "providers": stages["onnxruntime"].providers,
        "environment": environment(),
        "load": load.summary(),
        "rows": rows,
        "int8_backbone_max_abs_difference": differences,
        "accuracy": ap,
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
    if load.get("warning"):
        loads += f" — **{load['warning']}**"
    text = f"{markdown_table(headers, rows)}\n\n{loads}"
    if "onnxruntime-int8" in result["settings"].get("sides", ()):
        int8_rows = [
            (r["batch"], r["onnxruntime_network"]["median_ms"], r[f"{INT8}_network"]["median_ms"],
             r["fp32_over_int8_network"], r[f"{INT8}_stage"]["median_ms"])
            for r in result["rows"]
        ]  # fmt: skip
        text += "\n\n" + markdown_table(
            ("batch", "ORT fp32 net ms/frame", "ORT int8 net ms/frame", "fp32/int8", "int8 stage ms/frame"),
            int8_rows,
        )
        text += f"\n\nint8 raw outputs: max |Δ| to torch {result['int8_backbone_max_abs_difference']:.3g}"
    ap = result.get("accuracy")
    if ap:
        ap_rows = [
            (side, f"{ap[side]['keypoint_ap']:.4f}", f"{ap[side]['box_ap']:.4f}")
            for side in ap
            if isinstance(ap[side], dict)
        ]
        text += f"\n\nAP on {ap['images']} generated held-out scenes (seed {ap['seed']}):\n\n"
        text += markdown_table(("side", "keypoint AP", "box AP"), ap_rows)
    return text


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=480)
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 4])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--threads", type=int, default=len(os.sched_getaffinity(0)))
    parser.add_argument("--checkpoint", type=Path, default=None)
    parser.add_argument("--int8", action="store_true", help="add the static int8 graph as a third side")
    parser.add_argument("--calibration-images", type=int, default=64)
    parser.add_argument("--ap-images", type=int, default=0, help="keypoint AP on this many scenes (0: skip)")
    parser.add_argument("--smoke", action="store_true", help="batch 1, 1 repeat, int8 on 4 images, AP on 4")
    add_output_args(parser, "onnx_backend")
    args = parse_bench_args(parser, argv)
    if args.smoke:
        args.batches, args.repeats, args.warmup = [1], 1, 1
        args.int8, args.calibration_images, args.ap_images = True, 4, 4
    run_benchmark(args, measure, markdown, lambda result, folder: [])


if __name__ == "__main__":
    main()
