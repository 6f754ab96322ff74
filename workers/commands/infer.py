"""``posestream infer IMAGE|VIDEO...``: run the network on image files (drawn images) or video files
(tracked, an annotated WebM: ``infer_video``), print PersonEvents."""

from __future__ import annotations

import json
import time
from pathlib import Path

import typer


def _fail(message: str) -> typer.Exit:
    typer.echo(f"error: {message}", err=True)
    return typer.Exit(code=2)


def register(app: typer.Typer) -> None:
    @app.command("infer")
    def infer(
        images: list[Path] = typer.Argument(
            ..., help="Image files (anything OpenCV reads: JPEG, PNG, …) or video files (.mp4, .webm, …)."
        ),
        out: Path = typer.Option(
            Path("posestream-out"), "-o", "--out", help="Folder for the drawn images and annotated videos."
        ),
        checkpoint: Path | None = typer.Option(
            None, "--checkpoint", help="Checkpoint file (default: the packaged model/weights/demo.pt)."
        ),
        json_files: bool = typer.Option(
            False,
            "--json",
            help="Also write OUT/<image stem>.json (the image's PersonEvents as a JSON list); for a video "
            "OUT/<name>.jsonl, events and results as `posestream events --json --results` prints them.",
        ),
        video: bool = typer.Option(
            False, "--video", help="Read every argument as a video (default: by its suffix)."
        ),
        png: bool = typer.Option(
            False, "--png/--no-png", help="Video: also write each annotated frame as OUT/<name>/NNNNNN.png."
        ),
        blur: bool = typer.Option(False, "--blur-faces", help="Blur heads (from the head keypoints)."),
        strip: Path | None = typer.Option(
            None, "--strip", help="Video: also write a PNG strip of 4 annotated frames here."
        ),
        max_frames: int | None = typer.Option(
            None, "--max-frames", min=1, help="Video: stop after this many."
        ),
        device: str | None = typer.Option(
            None, "--device", help="cpu, cuda, cuda:1 … (default: CUDA if present)."
        ),
        preset: str = typer.Option("demo", "--preset", help="Network size when no checkpoint is found."),
        scales: str | None = typer.Option(
            None, "--scales", help="Test-time scales, e.g. 0.75,1.0,1.25 (each snapped to a multiple of 32)."
        ),
        flip: bool = typer.Option(
            False, "--flip/--no-flip", help="Also run each scale mirrored and average the heatmaps."
        ),
        backend: str = typer.Option(
            "torch",
            "--backend",
            help="What runs the backbone's network: torch, or onnx (ONNX Runtime, posestream[onnx]).",
        ),
        onnx_dir: Path | None = typer.Option(
            None,
            "--onnx-dir",
            help="With --backend onnx: a `posestream export onnx` folder (default: a cache).",
        ),
    ) -> None:
        """Detect persons, their poses and activities; write drawn images (videos: tracked, as an
        annotated WebM) to OUT and print one PersonEvent JSON object per person (one per line) on stdout."""
        import cv2

        from model.image_io import read_image_file
        from workers.client.sources import VIDEO_SUFFIXES

        videos = [p for p in images if video or p.suffix.lower() in VIDEO_SUFFIXES]
        for path in videos:
            if not path.is_file():
                raise _fail(f"{path}: no such video file")
        if strip is not None and not videos:
            raise _fail("--strip needs a video")
        images = [p for p in images if p not in videos]
        frames = []
        for path in images:
            image = read_image_file(path)  # EXIF orientation applied, as the stream worker does
            if image is None:
                raise _fail(f"{path}: not a readable image file")
            frames.append(image)

        from model.checkpoint import CheckpointError
        from model.draw import draw_predictions
        from model.multiposenet import PARTS
        from model.pipeline import PosePipeline
        from model.privacy import blur_faces
        from model.test_time import TestTimeAugmentation
        from schemas.wire import PersonEvent

        try:
            test_time = TestTimeAugmentation.parse(scales, flip)
            pipeline = PosePipeline.load(
                checkpoint,
                device=device,
                preset=preset,
                test_time=test_time,
                backend=backend,
                onnx_dir=onnx_dir,
            )
        except (CheckpointError, ValueError) as exc:
            raise _fail(str(exc)) from None
        if not pipeline.trained:
            missing = sorted(set(PARTS) - pipeline.trained_parts)
            untrained = "all parts" if len(missing) == len(PARTS) else ", ".join(missing)
            typer.secho(
                f"WARNING: UNTRAINED network ({untrained}; model {pipeline.model_version}): "
                "boxes, keypoints and activities are meaningless.",
                err=True,
                fg=typer.colors.RED,
                bold=True,
            )

        out.mkdir(parents=True, exist_ok=True)
        from workers.commands.infer_video import VideoOutputs, run_video

        outputs = VideoOutputs(
            png=png, json_lines=json_files, blur_faces=blur, strip=strip, max_frames=max_frames
        )
        for path in videos:
            try:
                summary = run_video(pipeline, path, out, outputs)
            except ValueError as exc:
                raise _fail(str(exc)) from None
            typer.echo(summary.line(path), err=True)
        used_names: set[str] = set()
        for frame_id, (path, image) in enumerate(zip(images, frames, strict=True)):
            ts = time.time()
            started = time.perf_counter()
            persons = pipeline.predict([image])[0]
            latency_ms = (time.perf_counter() - started) * 1000.0
            height, width = image.shape[:2]
            events = [
                PersonEvent(
                    event_id=PersonEvent.make_id("cli", frame_id, index),
                    camera_id="cli",
                    frame_id=frame_id,
                    ts=ts,
                    person=index,
                    model=pipeline.model_version,
                    width=width,
                    height=height,
                    latency_ms=latency_ms,
                    **person.to_plain(),
                ).to_dict()  # the optional v1 additions (track_id, …) left out: no tracking here
                for index, person in enumerate(persons)
            ]
            for event in events:
                typer.echo(json.dumps(event))

            name = path.name if cv2.haveImageWriter(path.name) else f"{path.stem}.png"
            if name in used_names:
                name = f"{frame_id}_{name}"
            used_names.add(name)
            drawn_path = out / name
            shown = blur_faces(image, persons) if blur else image
            if not cv2.imwrite(str(drawn_path), draw_predictions(shown, persons)):
                raise _fail(f"cannot write {drawn_path}")
            if json_files:
                (out / f"{Path(name).stem}.json").write_text(json.dumps(events, indent=2) + "\n")
            typer.echo(f"{path} → {drawn_path}: {len(persons)} person(s), {latency_ms:.0f} ms", err=True)
