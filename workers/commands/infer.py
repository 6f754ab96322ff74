"""``posestream infer IMAGE...``: run the network on image files, draw the results, print PersonEvents."""

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
        images: list[Path] = typer.Argument(..., help="Image files (anything OpenCV reads: JPEG, PNG, …)."),
        out: Path = typer.Option(Path("posestream-out"), "-o", "--out", help="Folder for the drawn images."),
        checkpoint: Path | None = typer.Option(
            None, "--checkpoint", help="Checkpoint file (default: the packaged model/weights/demo.pt)."
        ),
        json_files: bool = typer.Option(
            False, "--json", help="Also write OUT/<image stem>.json: the image's PersonEvents as a JSON list."
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
    ) -> None:
        """Detect persons, their poses and activities; write drawn images to OUT and print one
        PersonEvent JSON object per person (one per line) on stdout."""
        import cv2

        frames = []
        for path in images:
            image = cv2.imread(str(path), cv2.IMREAD_COLOR) if path.is_file() else None
            if image is None:
                raise _fail(f"{path}: not a readable image file")
            frames.append(image)

        from model.checkpoint import CheckpointError
        from model.draw import draw_predictions
        from model.multiposenet import PARTS
        from model.pipeline import PosePipeline
        from model.test_time import TestTimeAugmentation
        from schemas.wire import PersonEvent

        try:
            test_time = TestTimeAugmentation.parse(scales, flip)
            pipeline = PosePipeline.load(checkpoint, device=device, preset=preset, test_time=test_time)
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
                ).model_dump(mode="json")
                for index, person in enumerate(persons)
            ]
            for event in events:
                typer.echo(json.dumps(event))

            name = path.name if cv2.haveImageWriter(path.name) else f"{path.stem}.png"
            if name in used_names:
                name = f"{frame_id}_{name}"
            used_names.add(name)
            drawn_path = out / name
            if not cv2.imwrite(str(drawn_path), draw_predictions(image, persons)):
                raise _fail(f"cannot write {drawn_path}")
            if json_files:
                (out / f"{Path(name).stem}.json").write_text(json.dumps(events, indent=2) + "\n")
            typer.echo(f"{path} → {drawn_path}: {len(persons)} person(s), {latency_ms:.0f} ms", err=True)
