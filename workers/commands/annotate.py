"""``posestream annotate SOURCE --events FILE|REDIS_URL --out OUT``: a camera's events drawn onto its
source frames, as a WebM video a browser plays and PNGs (``workers.annotate``)."""

from __future__ import annotations

from pathlib import Path

import typer


def register(app: typer.Typer) -> None:
    @app.command("annotate")
    def annotate(
        source: str = typer.Argument(..., help="The video file or folder of frames that was published."),
        events: str = typer.Option(
            ...,
            "--events",
            help="A JSON-lines file (`posestream events --json --results > FILE`) or a Redis URL "
            "(its events and results streams, read from the start).",
        ),
        out: Path = typer.Option(..., "-o", "--out", help="Folder for OUT/<name>.webm and OUT/<name>/*.png."),
        camera_id: str | None = typer.Option(
            None, "--camera-id", help="The camera to draw (needed when the events hold several)."
        ),
        blur: bool = typer.Option(False, "--blur-faces", help="Blur heads (from the head keypoints)."),
        png: bool = typer.Option(True, "--png/--no-png", help="Also write each frame as a PNG."),
        fps: float | None = typer.Option(
            None, min=0.1, help="Frame rate of the video (default: the source video's, 25 for a folder)."
        ),
    ) -> None:
        """Draw boxes, skeletons, track ids and smoothed activities onto the source's frames."""
        from workers.annotate import annotate_source, index_events, is_redis_url, read_json_lines, read_redis

        try:
            if is_redis_url(events):
                messages = read_redis(events, camera_id)
            elif Path(events).is_file():
                messages = read_json_lines(events)
            else:
                raise ValueError(f"--events {events}: no such file (nor a redis:// URL)")
            index = index_events(messages, camera_id)
            summary = annotate_source(source, index, out, png=png, blur=blur, fps=fps)
        except ValueError as exc:
            typer.echo(f"error: {exc}", err=True)
            raise typer.Exit(2) from None
        pngs = f", PNGs in {summary.png_dir}" if summary.png_dir else ""
        typer.echo(
            f"{source} → {summary.video}: {summary.frames} frames, {summary.events} events drawn on "
            f"{summary.frames_with_events} of them (camera {index.camera_id or '?'}){pngs}",
            err=True,
        )
