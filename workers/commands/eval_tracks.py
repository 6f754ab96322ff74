"""``posestream eval tracks``: identity switches and IDF1 of the tracker on generated crossing sequences,
with ground-truth detections (clean and noisy) and with the model end to end. Writes
``OUT/eval_tracks.json`` + ``.md``."""

from __future__ import annotations

from pathlib import Path

import typer


def register_tracks(eval_app: typer.Typer) -> None:
    @eval_app.command("tracks")
    def tracks(
        sequences: int = typer.Option(4, "--sequences", min=1, help="Generated crossing sequences."),
        frames: int = typer.Option(300, "--frames", min=2, help="Frames per sequence (25 fps)."),
        people: int = typer.Option(4, "--people", min=1, max=14, help="People per sequence."),
        seed: int = typer.Option(0, "--seed", help="Sequences and detection noise."),
        noise: bool = typer.Option(
            True, "--noise/--no-noise", help="Also ground truth jittered with dropped detections."
        ),
        model: bool = typer.Option(
            True, "--model/--no-model", help="Also the model end to end (slow on CPU)."
        ),
        model_sequences: int = typer.Option(1, "--model-sequences", min=1, help="Model: sequences."),
        model_frames: int = typer.Option(150, "--model-frames", min=2, help="Model: frames per sequence."),
        checkpoint: Path | None = typer.Option(
            None, "--checkpoint", help="Checkpoint for --model. Default: the packaged model/weights/demo.pt."
        ),
        device: str | None = typer.Option(None, "--device", help="cpu, cuda … Default: CUDA when present."),
        out: Path = typer.Option(Path("runs/eval"), "--out", help="Folder for the JSON/Markdown reports."),
    ) -> None:
        """Identity switches per 100 frames, IDF1 and the right-identity share of the tracker on people
        crossing each other (targets with ground-truth detections: ≤ 1 switch / 100 frames, ≥ 0.95)."""
        from model.evaluation.track_eval import DetectionNoise, evaluate_tracks, write_track_report

        pipeline = None
        if model:
            from model.checkpoint import CheckpointError
            from model.pipeline import PosePipeline

            try:
                pipeline = PosePipeline.load(checkpoint, device=device)
            except (CheckpointError, ValueError) as exc:
                typer.echo(f"error: {exc}", err=True)
                raise typer.Exit(2) from exc
            if not pipeline.trained:
                typer.secho(
                    f"WARNING: model {pipeline.model_version} is not fully trained: its figures mean little.",
                    err=True,
                    fg=typer.colors.YELLOW,
                )
        try:
            report = evaluate_tracks(
                sequences,
                frames,
                people,
                seed,
                noise=DetectionNoise() if noise else None,
                pipeline=pipeline,
                model_sequences=model_sequences,
                model_frames=model_frames,
            )
        except ValueError as exc:
            typer.echo(f"error: {exc}", err=True)
            raise typer.Exit(2) from exc
        json_path, md_path = write_track_report(report, out)
        typer.echo(report.markdown())
        typer.echo(f"wrote {json_path} and {md_path}")
