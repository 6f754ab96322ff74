"""Cost per frame vs. people per frame: posestream (bottom-up) vs. torchvision's Keypoint R-CNN (top-down).

    .venv/bin/python -m bench.people_scaling [--size 256] [--persons 1 5 10 20] [--repeats 5] [--threads 1]

Both sides get the same frame (one synthetic size×size BGR frame), one frame per call, the same number of
torch threads, and are forced to process exactly P people although their weights are random:

* posestream — ``PosePipeline.predict([frame])``, the three stages the server runs, in one process:
  letterbox + mean-centring, ResNet + both FPNs, RetinaNet head (decode + NMS), keypoint subnet + peak
  extraction, then the PRN on P boxes (17×K peaks rendered on the PRN grid + the residual MLP + candidate
  scoring) and the activity MLP on P persons. The model config forces P persons: both score thresholds 0,
  ``max_persons`` = P, NMS IoU 1.0 over the top 100 anchors per level (an untrained head gives nearly
  identical boxes that NMS would merge), PRN = the network.
* Keypoint R-CNN — ``keypointrcnn_resnet50_fpn(weights=None, weights_backbone=None, min_size=max_size=size,
  box_score_thresh=0, box_detections_per_img=P)`` on the frame as an RGB float tensor: normalisation,
  ResNet-50-FPN, RPN (1000 proposals at test time), box head on every proposal + NMS, then the keypoint
  head (RoIAlign 14×14, 8 convs of 512, deconv to 56×56 heatmaps) and keypoint decoding for P boxes.

Timing: every (model, P) runs once per round, in ``--repeats`` rounds after ``--warmup`` untimed ones, in an
order that changes every round (``--order``: ``shuffle``, a seeded permutation, or ``alternate``, rotated),
so the load drift of a shared machine spreads over all of them and no side always runs first; median and
IQR per (model, P), and CPU ms per frame (``time.process_time``: all threads) beside the wall time. Both
report P persons with 17 keypoints each (checked: ``persons_out``). "Same backbone depth" is
posestream's seed sizes at ResNet-50 against Keypoint R-CNN's ResNet-50-FPN; the demo preset (ResNet-18)
is shown too. ``gmacs``: multiply-adds of convolutions and matmuls (torch's FlopCounterMode), a cost that
does not depend on the machine's load; RoIAlign and NMS are not counted.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from bench.common import (
    LoadMonitor,
    Timing,
    add_output_args,
    build_model,
    environment,
    forced_persons_config,
    markdown_table,
    parse_bench_args,
    pin_threads,
    plot_lines,
    run_benchmark,
    side_order,
    synthetic_frames,
)

MODELS = ("posestream-demo", "posestream-r50", "keypointrcnn-r50")
LABELS = {
    "posestream-demo": "posestream demo (ResNet-18)",
    "posestream-r50": "posestream seed sizes (ResNet-50)",
    "keypointrcnn-r50": "Keypoint R-CNN (ResNet-50-FPN)",
}
DEPTH = {"posestream-demo": 18, "posestream-r50": 50, "keypointrcnn-r50": 50}
PRESET = {"posestream-demo": "demo", "posestream-r50": "default"}
PER_LEVEL_CANDIDATES = 100
WHAT_IS_TIMED = {
    "posestream": "PosePipeline.predict([frame]): letterbox + mean-centring, ResNet + keypoint and detection "
    "FPNs, RetinaNet head (decode + NMS, top P kept), keypoint subnet + peak extraction, PRN on P boxes "
    "(peaks rendered on the PRN grid + residual MLP + candidate scoring), activity MLP on P persons",
    "keypointrcnn": "model([rgb float tensor]): normalisation, ResNet-50-FPN, RPN (1000 proposals), box head "
    "on every proposal + NMS (score threshold 0, top P kept), keypoint head (RoIAlign 14x14, 8 convs of 512, "
    "deconv to 56x56 heatmaps) and keypoint decoding for P boxes",
    "forcing_P": "posestream: both detector score thresholds 0, max_persons=P, NMS IoU 1.0 over the top 100 "
    "anchors per level, PRN = the network; Keypoint R-CNN: box_score_thresh=0, box_detections_per_img=P",
}


Runner = Callable[[np.ndarray], int]  # one frame → the number of persons it reported


def posestream_runners(name: str, size: int, persons: Sequence[int]) -> dict[int, Runner]:
    """One ``PosePipeline`` per P (configs differ in ``max_persons`` only), all sharing one set of weights."""
    from model.multiposenet import MultiPoseNet
    from model.pipeline import PosePipeline

    def config(count: int) -> Any:
        return forced_persons_config(
            PRESET[name], size, count, nms_iou_threshold=1.0, candidates_per_level=PER_LEVEL_CANDIDATES
        )

    base = build_model(config(max(persons)))
    runners = {}
    for count in persons:
        model = MultiPoseNet(config(count))
        model.load_state_dict(base.state_dict(), assign=True)  # the same tensors: no copy per P
        pipeline = PosePipeline(model.eval(), model_version="bench")
        runners[count] = lambda frame, pipeline=pipeline: len(pipeline.predict([frame])[0])
    return runners


def keypointrcnn_runners(size: int, persons: Sequence[int]) -> dict[int, Runner]:
    """One Keypoint R-CNN; ``roi_heads.detections_per_img`` (box_detections_per_img) is set per call."""
    import torch
    from torchvision.models.detection import keypointrcnn_resnet50_fpn

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = keypointrcnn_resnet50_fpn(
            weights=None,
            weights_backbone=None,
            min_size=size,
            max_size=size,
            box_score_thresh=0.0,
            box_detections_per_img=max(persons),
        ).eval()

    def run(frame: np.ndarray, count: int) -> int:
        model.roi_heads.detections_per_img = count
        with torch.inference_mode():
            image = torch.from_numpy(np.ascontiguousarray(frame[:, :, ::-1])).permute(2, 0, 1).float() / 255
            output = model([image])[0]
        if output["keypoints"].shape[1:] != (17, 3):
            raise RuntimeError(f"unexpected keypoints shape {tuple(output['keypoints'].shape)}")
        return int(output["boxes"].shape[0])

    return {count: (lambda frame, count=count: run(frame, count)) for count in persons}


def gmacs_of(run: Runner, frame: np.ndarray) -> float:
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter:
        run(frame)
    return round(counter.get_total_flops() / 2e9, 2)


def measure(args: argparse.Namespace) -> dict[str, Any]:
    """Every (model, P) once per round, ``repeats`` rounds after ``warmup`` untimed ones: interleaving
    spreads the machine's load drift over all of them instead of favouring whichever ran first."""
    threads = pin_threads(args.threads)
    frame = synthetic_frames(1, args.size, people=args.scene_people)[0]
    with LoadMonitor() as load:
        runs: dict[tuple[str, int], Runner] = {}
        for name in args.models:
            if name == "keypointrcnn-r50":
                built = keypointrcnn_runners(args.size, args.persons)
            else:
                built = posestream_runners(name, args.size, args.persons)
            runs.update({(name, count): run for count, run in built.items()})
        persons_out = {key: run(frame) for key, run in runs.items()}
        for _ in range(args.warmup):
            for run in runs.values():
                run(frame)
        samples: dict[tuple[str, int], list[float]] = {key: [] for key in runs}
        cpu_samples: dict[tuple[str, int], list[float]] = {key: [] for key in runs}
        names = {f"{name}/{count}": (name, count) for name, count in runs}
        for repeat in range(args.repeats):
            for label in side_order(list(names), repeat, args.order):
                key = names[label]
                started, cpu = time.perf_counter(), time.process_time()
                runs[key](frame)
                cpu_samples[key].append((time.process_time() - cpu) * 1000.0)
                samples[key].append((time.perf_counter() - started) * 1000.0)
        rows = []
        for (name, persons), run in runs.items():
            row = {
                "model": name,
                "label": LABELS[name],
                "backbone_depth": DEPTH[name],
                "persons": persons,
                "persons_out": persons_out[(name, persons)],
                **Timing(tuple(samples[(name, persons)])).summary(),
                "cpu_ms_median": round(float(np.median(cpu_samples[(name, persons)])), 2),
                "gmacs": gmacs_of(run, frame) if args.gmacs else None,
            }
            rows.append(row)
            print(
                f"{LABELS[name]:<36} P={persons:<3} out={row['persons_out']:<3} "
                f"{row['median_ms']:>9.1f} ms  IQR {row['iqr_ms']:.1f}  GMAC {row['gmacs']}",
                flush=True,
            )
    by_key = {(r["model"], r["persons"]): r for r in rows}
    ratios = []
    for persons in args.persons:
        top_down = by_key.get(("keypointrcnn-r50", persons))
        bottom_up = by_key.get(("posestream-r50", persons))
        if top_down and bottom_up:
            time_ratio = top_down["median_ms"] / bottom_up["median_ms"]
            gmacs_ratio = top_down["gmacs"] / bottom_up["gmacs"] if top_down["gmacs"] else None
            ratios.append(
                {
                    "persons": persons,
                    "keypointrcnn_over_posestream_r50_time": round(time_ratio, 2),
                    "keypointrcnn_over_posestream_r50_gmacs": round(gmacs_ratio, 2) if gmacs_ratio else None,
                }
            )
    growth = {}
    low, high = min(args.persons), max(args.persons)
    for name in args.models:
        first, last = by_key.get((name, low)), by_key.get((name, high))
        if first and last and low != high:
            growth[name] = {
                "from_persons": low,
                "to_persons": high,
                "time_ratio": round(last["median_ms"] / first["median_ms"], 2),
                "ms_per_extra_person": round((last["median_ms"] - first["median_ms"]) / (high - low), 2),
                "gmacs_ratio": round(last["gmacs"] / first["gmacs"], 2) if first["gmacs"] else None,
            }
    return {
        "benchmark": "people_scaling",
        "command": "python -m bench.people_scaling " + " ".join(args.argv),
        "settings": {
            "size": args.size,
            "persons": list(args.persons),
            "models": list(args.models),
            "repeats": args.repeats,
            "warmup": args.warmup,
            "threads": threads,
            "batch": 1,
            "order": f"{args.order}, every (model, P) once per repeat",
        },
        "what_is_timed": WHAT_IS_TIMED,
        "environment": environment(),
        "load": load.summary(),
        "rows": rows,
        "ratios": ratios,
        "growth": growth,
    }


def markdown(result: dict[str, Any]) -> str:
    settings = result["settings"]
    persons = settings["persons"]
    by_key = {(r["model"], r["persons"]): r for r in result["rows"]}
    headers = ["model", *(f"P={p} ms" for p in persons), f"P={persons[-1]} / P={persons[0]}"]
    headers.append(f"GMAC P={persons[0]} → P={persons[-1]}")
    rows = []
    for name in settings["models"]:
        cells = [by_key[(name, p)] for p in persons if (name, p) in by_key]
        growth = result["growth"].get(name, {})
        gmacs = f"{cells[0]['gmacs']} → {cells[-1]['gmacs']}" if cells and cells[0]["gmacs"] else None
        rows.append([LABELS[name], *(c["median_ms"] for c in cells), growth.get("time_ratio"), gmacs])
    text = markdown_table(headers, rows)
    if result["ratios"]:
        ratio_row = [["Keypoint R-CNN / posestream (both ResNet-50), time"]]
        ratio_row[0] += [r["keypointrcnn_over_posestream_r50_time"] for r in result["ratios"]]
        ratio_headers = ["ratio", *(f"P={r['persons']}" for r in result["ratios"])]
        text += "\n\n" + markdown_table(ratio_headers, ratio_row)
    return text


def plots(result: dict[str, Any], out_dir: Path) -> list[Path]:
    series = {}
    for name in result["settings"]["models"]:
        rows = [r for r in result["rows"] if r["model"] == name]
        series[LABELS[name]] = (
            [r["persons"] for r in rows],
            [r["median_ms"] for r in rows],
            [(r["q1_ms"], r["q3_ms"]) for r in rows],
        )
    settings = result["settings"]
    path = plot_lines(
        out_dir / "people_scaling.png",
        series,
        xlabel="people per frame (P)",
        ylabel="ms per frame (median, IQR band)",
        title=f"Cost vs. people per frame, {settings['size']} px, {settings['threads']} torch thread(s)",
    )
    return [path]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=256, help="input side in px (multiple of 32), e.g. 480")
    parser.add_argument("--persons", type=int, nargs="+", default=[1, 5, 10, 20])
    parser.add_argument("--models", nargs="+", choices=MODELS, default=list(MODELS))
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--threads", type=int, default=1, help="torch threads, the same for both sides")
    parser.add_argument("--scene-people", type=int, default=3, help="people drawn in the synthetic frame")
    parser.add_argument("--order", choices=("shuffle", "alternate"), default="shuffle")
    parser.add_argument("--no-gmacs", dest="gmacs", action="store_false")
    add_output_args(parser, "people_scaling")
    args = parse_bench_args(parser, argv)
    args.persons = sorted(set(args.persons))
    return args


def main(argv: list[str] | None = None) -> dict[str, Any]:
    return run_benchmark(parse_args(argv), measure, markdown, plots)


if __name__ == "__main__":
    main()
