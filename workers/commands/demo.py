"""``posestream demo``: embedded Redis + local Ray Serve + two cameras, events live, a summary at the end."""

from __future__ import annotations

import time
from pathlib import Path

import typer


def register(app: typer.Typer) -> None:
    @app.command("demo")
    def demo(
        videos: list[str] = typer.Argument(
            None, help="Video files (or any publish source) to use as cameras; default: a synthetic sequence."
        ),
        frames: int = typer.Option(60, min=1, help="Frames per camera."),
        people: int = typer.Option(3, min=1, max=8, help="People in the synthetic sequence."),
        fps: float | None = typer.Option(
            None, min=0, help="Frames/s per camera (default: 3, or a video's own rate; 0: unpaced)."
        ),
        seed: int = typer.Option(0, help="Seed of the synthetic sequence (camera b uses seed + 1)."),
        width: int = typer.Option(480, min=64, help="Synthetic frame width."),
        height: int = typer.Option(480, min=64, help="Synthetic frame height."),
        out: Path | None = typer.Option(
            None, help="Folder for annotated frames (default: demo-output/<date-time>)."
        ),
        no_frames: bool = typer.Option(False, "--no-frames", help="Do not save annotated frames."),
        json_summary: Path | None = typer.Option(None, "--json-summary", help="Also write the summary here."),
        redis_url: str | None = typer.Option(
            None, help="Use this Redis instead of starting an embedded one (its streams must be empty)."
        ),
        checkpoint: str | None = typer.Option(
            None, help="Model checkpoint (default: the packaged model/weights/demo.pt)."
        ),
        config: Path | None = typer.Option(None, help="Serve config (default: deploy/serve_config.yaml)."),
        timeout: float = typer.Option(600.0, help="Seconds to wait for the last frames once published."),
        verbose: bool = typer.Option(False, help="Show the Ray/Serve replicas' logs."),
        view: bool = typer.Option(True, "--view/--no-view", help="Serve the live view while the demo runs."),
        view_port: int = typer.Option(8080, help="The live view's port (a free one if taken)."),
        max_age: float | None = typer.Option(
            None,
            "--max-age",
            min=0,
            help="Seconds a camera's frame may wait before it is answered stale (default "
            "POSESTREAM_LIVE_MAX_AGE_S, 2; 0: never). The synthetic cameras are live; video files never "
            "expire.",
        ),
    ) -> None:
        """Run posestream end to end on this machine and print what it sees."""
        from workers.demo import DemoOptions, run_demo

        out_dir = out or Path("demo-output") / time.strftime("%Y%m%d-%H%M%S")
        options = DemoOptions(
            videos=list(videos or []),
            frames=frames,
            people=people,
            size=(width, height),
            fps=fps,
            seed=seed,
            out_dir=out_dir,
            json_summary=json_summary,
            redis_url=redis_url,
            checkpoint=checkpoint,
            config_path=config,
            timeout_s=timeout,
            save_frames=not no_frames,
            verbose=verbose,
            view=view,
            view_port=view_port,
            max_age_s=max_age,
        )
        if not no_frames:
            typer.echo(f"annotated frames go to {out_dir.resolve()}", err=True)
        summary = run_demo(options)
        if not summary["balanced"]:
            typer.echo("error: the counts do not balance (published != ok + stale + dead)", err=True)
            raise typer.Exit(1)
