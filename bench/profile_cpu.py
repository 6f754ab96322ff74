"""Where the CPU time of one frame goes at 480 px: a table of ms and share per section of the path a frame
takes through the worker, timed section by section over ``--frames`` frames (after a warm-up).

    .venv/bin/python -m bench.profile_cpu [--size 480] [--frames 20] [--batch 1] [--threads N] [--torch-ops]
    .venv/bin/python -m bench.profile_cpu --smoke      # 2 frames: checks that it runs (figures moot)

Sections, in the order a frame meets them (the code each calls is the stage's own):
  frame message decode (``Frame.from_bytes``, msgpack + schema) and JPEG decode (``cv2.imdecode``);
  pre-processing (``model.preprocess.preprocess``: letterbox + mean-centring);
  trunk (ResNet), keypoint FPN, keypoint head, detection FPN, detection head (the network, four convs ×
  two towers), box decoding + NMS (anchors, ``RetinaNetHead.postprocess``), peak extraction (``_decode``:
  find_peaks, letterbox mapping);
  backbone → PRN message, PRN (``ResidualStage``: grids, residual MLP, assignment), PRN → activity message,
  activity (``ActivityStage``) — between stages Ray pickles the records (protocol 5, numpy out of band):
  timed here as a ``pickle`` round trip of the same records;
  output encode (``person_events`` + ``FrameResult`` → msgpack bytes).
``sum of sections`` is checked against ``PosePipeline.predict`` timed whole on the same frames. With
``--torch-ops``, ``torch.profiler``'s top operators (self CPU time) over the network pass are added.
The model: the packaged demo checkpoint on a size×size canvas; the frames: generated scenes (3 people).
"""

from __future__ import annotations

import argparse
import os
import pickle
import time
from collections.abc import Callable
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
    synthetic_frames,
    usable_cores,
)

SECTIONS = (
    "frame message + JPEG decode",
    "pre-processing",
    "trunk",
    "keypoint FPN",
    "keypoint head",
    "detection FPN",
    "detection head",
    "box decoding + NMS",
    "peak extraction",
    "backbone → PRN message",
    "PRN",
    "PRN → activity message",
    "activity",
    "output encode (msgpack)",
)


def _pickled(records: Any) -> Any:
    return pickle.loads(pickle.dumps(records, protocol=5))


def _model(checkpoint: Path | None, size: int) -> tuple[Any, str]:
    from model.checkpoint import DEFAULT_CHECKPOINT, load_checkpoint
    from model.multiposenet import MultiPoseNet

    trained, meta = load_checkpoint(checkpoint or DEFAULT_CHECKPOINT)
    model = MultiPoseNet(trained.config.model_copy(update={"input_size": (size, size)}))
    model.load_state_dict(trained.state_dict())
    model.trained_parts = set(trained.trained_parts)
    return model.eval(), str(meta["version"])


def profile_frames(pipeline: Any, messages: list[bytes], batch: int) -> tuple[dict[str, float], int]:
    """One pass of ``batch`` frames through every section: ms per section, and the persons found."""
    import cv2
    import torch

    from model.preprocess import preprocess
    from schemas.wire import Frame, FrameResult
    from workers.events import person_events

    detector = pipeline.backbone.module
    config = pipeline.model.config
    spent: dict[str, float] = dict.fromkeys(SECTIONS, 0.0)

    def timed(name: str, fn: Callable[[], Any]) -> Any:
        started = time.perf_counter()
        out = fn()
        spent[name] += (time.perf_counter() - started) * 1000.0
        return out

    def decode() -> tuple[list[Frame], list[np.ndarray]]:
        frames = [Frame.from_bytes(m) for m in messages[:batch]]
        return frames, [cv2.imdecode(np.frombuffer(f.image, np.uint8), cv2.IMREAD_COLOR) for f in frames]

    frames, images = timed(SECTIONS[0], decode)
    tensor, letterboxes = timed(
        SECTIONS[1], lambda: preprocess(images, config.input_size, config.pixel_mean_bgr)
    )
    canvas_hw = (int(tensor.shape[-2]), int(tensor.shape[-1]))
    with torch.inference_mode():
        features = timed("trunk", lambda: detector.backbone(tensor))
        keypoint_features = timed("keypoint FPN", lambda: detector.keypoint_fpn(features))
        heatmaps, _ = timed("keypoint head", lambda: detector.keypoint_head(keypoint_features))
        pyramid = timed("detection FPN", lambda: detector.detection_fpn(features))
        outputs = timed("detection head", lambda: detector.detection_head(tensor, pyramid))

        def boxes() -> list[tuple[np.ndarray, np.ndarray]]:
            from model.preprocess import unletterbox_boxes

            anchors = detector.detection_head.anchors(tensor, pyramid)
            persons = detector.detection_head.postprocess(outputs, anchors, pyramid, canvas_hw)
            return [
                (unletterbox_boxes(b.float().cpu().numpy(), box), s.float().cpu().numpy())
                for box, (b, s) in zip(letterboxes, persons, strict=True)
            ]

        found = timed("box decoding + NMS", boxes)
        detections = timed("peak extraction", lambda: detector._decode(heatmaps, letterboxes, found))
    detections = timed("backbone → PRN message", lambda: _pickled(detections))
    posed = timed("PRN", lambda: pipeline.residual(detections))
    posed = timed("PRN → activity message", lambda: _pickled(posed))
    predictions = timed("activity", lambda: pipeline.activity(posed))

    def encode() -> list[bytes]:
        out = []
        for frame, image, persons in zip(frames, images, predictions, strict=True):
            height, width = image.shape[:2]
            events = person_events(
                frame,
                persons,
                model_version=pipeline.model_version,
                width=width,
                height=height,
                latency_ms=1.0,
            )
            out += [event.to_bytes() for event in events]
            result = FrameResult(
                camera_id=frame.camera_id,
                frame_id=frame.frame_id,
                ts=frame.ts,
                status="ok",
                persons=len(events),
                event_ids=[e.event_id for e in events],
                width=width,
                height=height,
                latency_ms=1.0,
            )
            out.append(result.to_bytes())
        return out

    timed("output encode (msgpack)", encode)
    return spent, sum(len(p) for p in predictions)


def torch_ops(pipeline: Any, tensor: Any, top: int = 15) -> list[dict[str, Any]]:
    """torch.profiler's top operators by self CPU time over one network pass (trunk, FPNs, heads)."""
    import torch
    from torch.profiler import ProfilerActivity, profile

    from model.onnx_export import DetectorGraph

    graph = DetectorGraph(pipeline.backbone.module).eval()
    with torch.inference_mode(), profile(activities=[ProfilerActivity.CPU]) as prof:
        graph(tensor)
    events = sorted(prof.key_averages(), key=lambda e: e.self_cpu_time_total, reverse=True)[:top]
    total = sum(e.self_cpu_time_total for e in prof.key_averages()) or 1.0
    return [
        {
            "op": e.key,
            "calls": e.count,
            "self_cpu_ms": round(e.self_cpu_time_total / 1000, 2),
            "share_pct": round(100 * e.self_cpu_time_total / total, 1),
        }
        for e in events
    ]


def measure(args: argparse.Namespace) -> dict[str, Any]:
    import torch

    from model.pipeline import PosePipeline
    from model.preprocess import preprocess
    from schemas.wire import Frame
    from workers.client import encode_image

    threads = pin_threads(args.threads)
    model, version = _model(args.checkpoint, args.size)
    pipeline = PosePipeline(model, version, "cpu")
    images = synthetic_frames(max(args.batch, 4), args.size, people=args.scene_people)
    messages = [
        Frame(camera_id="profile", frame_id=i, ts=time.time(), image=encode_image(image)).to_bytes()
        for i, image in enumerate(images)
    ]
    with LoadMonitor() as load:
        for _ in range(args.warmup):
            profile_frames(pipeline, messages, args.batch)
        samples: dict[str, list[float]] = {name: [] for name in SECTIONS}
        persons, whole = [], []
        for index in range(args.frames):
            rotated = messages[index % len(messages) :] + messages[: index % len(messages)]
            spent, found = profile_frames(pipeline, rotated, args.batch)
            persons.append(found)
            for name, ms in spent.items():
                samples[name].append(ms / args.batch)
            decoded = images[: args.batch]
            started = time.perf_counter()
            with torch.inference_mode():
                pipeline.predict(decoded)
            whole.append((time.perf_counter() - started) * 1000.0 / args.batch)
        ops = None
        if args.torch_ops:
            tensor, _ = preprocess(images[: args.batch], model.config.input_size, model.config.pixel_mean_bgr)
            ops = torch_ops(pipeline, tensor)
    medians = {name: Timing(tuple(values)).median_ms for name, values in samples.items()}
    total = sum(medians.values())
    rows = [
        {
            "section": name,
            "median_ms": round(medians[name], 3),
            "share_pct": round(100 * medians[name] / total, 1) if total else None,
            **{k: v for k, v in Timing(tuple(samples[name])).summary().items() if k in ("q1_ms", "q3_ms")},
        }
        for name in SECTIONS
    ]
    return {
        "benchmark": "profile_cpu",
        "command": "python -m bench.profile_cpu " + " ".join(args.argv),
        "settings": {
            "size": args.size,
            "frames": args.frames,
            "warmup": args.warmup,
            "batch": args.batch,
            "threads": threads,
            "scene_people": args.scene_people,
            "smoke": args.smoke,
        },
        "model_version": version,
        "environment": environment(),
        "load": load.summary(),
        "rows": rows,
        "sum_of_sections_ms": round(total, 2),
        "predict_whole_ms": Timing(tuple(whole)).summary(),
        "persons_per_pass_median": float(np.median(persons)),
        "torch_ops": ops,
        "what_is_timed": "ms per frame per section (median over frames), the worker's path from the frame "
        "message to the encoded events; inter-stage messages as a pickle round trip (what Ray does)",
    }


def markdown(result: dict[str, Any]) -> str:
    s, load = result["settings"], result["load"]
    table = markdown_table(
        ["section", "ms / frame", "share %"],
        [[r["section"], r["median_ms"], r["share_pct"]] for r in result["rows"]],
    )
    text = (
        f"{s['size']} px, batch {s['batch']}, {s['threads']} thread(s), {s['frames']} frames, model "
        f"{result['model_version']}, commit {result['environment']['git_commit']}; load average before "
        f"{load['load_average_before'][0]}" + (f" — **{load['warning']}**" if load.get("warning") else "")
    )
    text += f"\n\n{table}\n\nsum of sections {result['sum_of_sections_ms']} ms/frame; "
    text += f"PosePipeline.predict whole {result['predict_whole_ms']['median_ms']} ms/frame"
    if result["torch_ops"]:
        text += "\n\n" + markdown_table(
            ["torch op (network pass)", "calls", "self CPU ms", "share %"],
            [[o["op"], o["calls"], o["self_cpu_ms"], o["share_pct"]] for o in result["torch_ops"]],
        )
    return text


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=480)
    parser.add_argument("--frames", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--threads", type=int, default=usable_cores())
    parser.add_argument("--scene-people", type=int, default=3)
    parser.add_argument("--checkpoint", type=Path, default=None)
    parser.add_argument("--torch-ops", action="store_true", help="add torch.profiler's top operators")
    parser.add_argument("--smoke", action="store_true", help="2 frames, 1 warm-up: checks that it runs")
    add_output_args(parser, "profile_cpu")
    args = parse_bench_args(parser, argv)
    if args.smoke:
        args.frames, args.warmup = 2, 1
    if args.threads < 1:
        parser.error("--threads must be >= 1")
    os.environ.setdefault("OMP_NUM_THREADS", str(args.threads))
    result = run_benchmark(args, measure, markdown, lambda result, folder: [])
    args.out.with_suffix(".md").write_text(
        "# CPU profile\n\n`" + result["command"] + "`\n\n" + markdown(result) + "\n"
    )
    return result


if __name__ == "__main__":
    main()
