"""``posestream data``: synthetic people datasets, moving sequences and contact sheets."""

from __future__ import annotations

import json
from pathlib import Path

import typer

data_app = typer.Typer(
    name="data",
    help="Synthetic people in COCO keypoint format: datasets, sequences, contact sheets.",
    no_args_is_help=True,
)


def parse_size(size: str) -> tuple[int, int]:
    """'640x480' -> (640, 480)."""
    try:
        width, height = (int(v) for v in size.lower().split("x"))
    except ValueError:
        raise typer.BadParameter(f"size must look like WIDTHxHEIGHT, e.g. 480x480, got {size!r}") from None
    if width < 32 or height < 32:
        raise typer.BadParameter(f"size must be at least 32x32, got {size!r}")
    return width, height


@data_app.command("synth")
def synth(
    out: Path = typer.Option(..., "--out", help="Output directory (annotations/ and images/ are created)."),
    images: int = typer.Option(1000, "--images", min=1, help="Number of images (train + val)."),
    seed: int = typer.Option(0, "--seed", help="Random seed; the same seed gives byte-identical output."),
    val_fraction: float = typer.Option(0.1, "--val-fraction", min=0.0, max=0.99, help="Share of val images."),
    size: str = typer.Option("480x480", "--size", help="Image size WIDTHxHEIGHT."),
    max_people: int = typer.Option(8, "--max-people", min=1, max=14, help="Most people in one image."),
    image_format: str = typer.Option("jpg", "--format", help="jpg or png."),
    workers: int = typer.Option(1, "--workers", min=1, help="Processes; output does not depend on it."),
    pose_prior: str | None = typer.Option(
        None,
        "--pose-prior",
        help=(
            "'coco-sp': arms and torso tilt lifted from 897 real COCO val2017 poses (the pocketpose "
            "wheel, fetched once with pip into $POSESTREAM_CACHE_DIR or ~/.cache/posestream; CC BY-NC "
            "4.0, never committed), re-posed per activity: legs, gait and seat follow the activity, "
            "walkers and runners keep their arm swing. Default: the built-in poses."
        ),
    ),
    empty_fraction: float = typer.Option(
        0.0,
        "--empty-fraction",
        min=0.0,
        max=0.9,
        help="Share of train images that hold nobody (backgrounds, noise): negatives for the detector.",
    ),
) -> None:
    """Render a COCO person-keypoints dataset of synthetic people with activity labels."""
    from model.data.coco_sp import CocoSpUnavailableError
    from model.data.synth import generate_dataset

    try:
        summary = generate_dataset(
            out,
            images,
            seed,
            val_fraction=val_fraction,
            size=parse_size(size),
            max_people=max_people,
            image_format=image_format,
            workers=workers,
            pose_prior=pose_prior,
            empty_fraction=empty_fraction,
        )
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from exc
    except CocoSpUnavailableError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from exc
    typer.echo(
        f"wrote {summary['images']['train']} train / {summary['images']['val']} val images "
        f"({summary['annotations']['train'] + summary['annotations']['val']} people) to {out} "
        f"in {summary['seconds']:.1f}s ({summary['images_per_second']:.1f} images/s)"
    )


@data_app.command("sequence")
def sequence(
    out: Path = typer.Option(..., "--out", help="Output directory."),
    frames: int = typer.Option(150, "--frames", min=1, help="Number of frames."),
    people: int = typer.Option(4, "--people", min=1, max=14, help="People in the scene."),
    seed: int = typer.Option(0, "--seed", help="Random seed."),
    size: str = typer.Option("480x480", "--size", help="Frame size WIDTHxHEIGHT."),
    fps: float = typer.Option(25.0, "--fps", min=1.0, help="Frames per second of the motion and the MP4."),
    video: bool = typer.Option(True, "--video/--no-video", help="Also write sequence.mp4."),
) -> None:
    """Render people moving over frames with identities and activities (JSON + frames + MP4)."""
    from model.data.sequence import generate_sequence

    info = generate_sequence(out, frames, people, seed, size=parse_size(size), fps=fps, video=video)
    typer.echo(f"wrote {info.frames} frames of {info.people} people to {out} (activities {info.activities})")


@data_app.command("show")
def show(
    data: Path = typer.Option(..., "--data", help="Dataset directory (annotations/ and images/)."),
    out: Path = typer.Option(..., "--out", help="Contact sheet PNG to write."),
    split: str = typer.Option("val", "--split", help="train, val (or sequence for a sequence directory)."),
    count: int = typer.Option(16, "--count", min=1, help="Number of images on the sheet."),
    tile: int = typer.Option(320, "--tile", min=64, help="Tile size in pixels."),
    targets: bool = typer.Option(
        False,
        "--targets",
        help="Show a training batch instead: augmented crops with heatmaps, mask W, boxes.",
    ),
    input_size: int = typer.Option(480, "--input-size", min=32, help="Training crop size (with --targets)."),
    seed: int = typer.Option(0, "--seed", help="Augmentation seed (with --targets)."),
) -> None:
    """Write a contact sheet PNG: images with keypoints, skeletons, boxes and activity labels."""
    import cv2

    from model.data.show import make_contact_sheet

    if targets:
        from model.train.show_targets import target_sheet_from_folder

        path = target_sheet_from_folder(data, out, count=count, split=split, input_size=input_size, seed=seed)
        typer.echo(f"wrote {path}")
        return

    try:
        sheet = make_contact_sheet(data, split=split, count=count, tile_size=tile)
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from exc
    out.parent.mkdir(parents=True, exist_ok=True)
    if not cv2.imwrite(str(out), sheet):
        raise typer.BadParameter(f"could not write {out}")
    typer.echo(f"wrote {out} ({sheet.shape[1]}x{sheet.shape[0]})")


@data_app.command("poses")
def poses(
    images: Path = typer.Option(
        ..., "--images", help="Folder of <activity>/<image> files (labelled photos)."
    ),
    out: Path = typer.Option(..., "--out", help="poses JSON to write (input of `train activity --poses`)."),
    checkpoint: Path | None = typer.Option(None, "--checkpoint", help="Pose model (default: the demo one)."),
    device: str | None = typer.Option(None, "--device", help="cuda, cpu, ... (default: automatic)."),
    min_score: float = typer.Option(0.0, "--min-score", help="Drop persons scored below this."),
    min_joints: int = typer.Option(5, "--min-joints", min=1, max=17, help="Drop persons with fewer joints."),
) -> None:
    """Extract poses from labelled photos with the pose model: the seed's activity training set path."""
    from model.train.samples import extract_poses

    if not images.is_dir():
        raise typer.BadParameter(f"{images} is not a folder", param_hint="--images")
    summary = extract_poses(
        images, checkpoint, out, device=device, min_score=min_score, min_joints=min_joints
    )
    typer.echo(json.dumps(summary))


def register(app: typer.Typer) -> None:
    app.add_typer(data_app, name="data")
