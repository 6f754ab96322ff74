"""``posestream eval pipeline|prn|activity|all``: COCO AP of the pipeline (and its training diagnostics:
joint error, left/right confusion, keypoint AP with ground-truth boxes), PRN on ground-truth peaks,
activity cross-validation. Each writes ``OUT/eval_<what>.json`` + ``.md`` (``all``: ``OUT/eval.json``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

eval_app = typer.Typer(
    name="eval",
    help="Evaluate a checkpoint: COCO keypoint/box AP, PRN with ground-truth peaks, activity k-fold CV.",
    no_args_is_help=True,
)

DATA_HELP = "COCO-format folder (annotations/person_keypoints_<split>.json + images), e.g. a synthetic set."
CHECKPOINT_HELP = "Checkpoint to evaluate. Default: the packaged model/weights/demo.pt."


def _checkpoint_path(checkpoint: Path | None) -> Path:
    from model.checkpoint import DEFAULT_CHECKPOINT

    path = checkpoint or DEFAULT_CHECKPOINT
    if not path.is_file():
        raise typer.BadParameter(f"checkpoint not found: {path} (train one, or `make demo-weights`)")
    return path


def _finish(results: dict[str, Any], out: Path, name: str) -> None:
    from model.evaluation.report import results_markdown, write_report

    json_path, md_path = write_report(results, out, name)
    typer.echo(results_markdown(results))
    typer.echo(f"wrote {json_path} and {md_path}")


def _run(
    what: tuple[str, ...],
    data: Path | None,
    checkpoint: Path | None,
    out: Path,
    split: str,
    max_images: int | None,
    device: str | None,
    folds: int,
    epochs: int | None,
    seed: int,
    real_poses: bool,
    scenes: int,
    poses: Path | None,
    test_time: Any = None,  # a model.test_time.TestTimeAugmentation for the pipeline; None: one view
    ceilings: bool = False,
) -> dict[str, Any]:
    import torch

    from model.checkpoint import load_checkpoint

    path = _checkpoint_path(checkpoint)
    results: dict[str, Any] = {
        "meta": {"checkpoint": str(path), "data": str(data), "split": split, "seed": seed}
    }
    model, meta = load_checkpoint(path)
    results["meta"]["model_version"] = meta["version"]
    results["meta"]["trained_parts"] = ", ".join(meta["trained_parts"])
    torch.manual_seed(seed)
    if "pipeline" in what:
        from model.evaluation.coco_eval import evaluate_pipeline
        from model.evaluation.diagnostics import pipeline_diagnostics
        from model.pipeline import PosePipeline

        if data is None:
            raise typer.BadParameter("eval pipeline needs --data")
        pipeline = PosePipeline(model, str(meta["version"]), device, test_time)
        results["meta"]["test_time"] = pipeline.test_time.describe()
        results["pipeline"] = evaluate_pipeline(pipeline, data, split, max_images, results_dir=out)
        results["diagnostics"] = pipeline_diagnostics(pipeline, data, split, max_images).as_dict()
        if ceilings:
            from model.evaluation.ceilings import pipeline_ceilings

            results["ceilings"] = pipeline_ceilings(pipeline, data, split, max_images).as_dict()
    if "prn" in what:
        from model.evaluation.prn_eval import evaluate_prn_real_poses, evaluate_prn_split

        prn = model.prn.cpu()
        results["prn"] = {}
        if data is not None:
            results["prn"]["split"] = evaluate_prn_split(prn, data, split, max_images)
        if real_poses:
            results["prn"]["real_poses"] = evaluate_prn_real_poses(prn, scenes=scenes, seed=seed)
    if "activity" in what:
        from model.evaluation.activity_cv import activity_cv_report, activity_poses

        if data is None and poses is None:
            raise typer.BadParameter("eval activity needs --data (activity-labelled set) or --poses")
        features, labels, activities = activity_poses(data, model.activities, poses=poses)
        results["activity"] = activity_cv_report(
            features, labels, activities, model.config, out, folds=folds, seed=seed, epochs=epochs or 60
        )
    return results


def _study(
    name: str, out: Path, data: Path | None, poses: Path | None, folds: int, epochs: int | None, seed: int
) -> None:
    """``eval activity --study`` (model/evaluation/activity_study.py); it needs no checkpoint."""
    import shlex
    import sys

    from model.evaluation.activity_study_report import activity_study_command

    if name != "activity":
        raise typer.BadParameter("--study belongs to `posestream eval activity`")
    command = "posestream " + shlex.join(sys.argv[1:])
    try:
        files = activity_study_command(out, data, poses, folds, epochs or 60, seed, command=command)
    except ValueError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from exc
    typer.echo(files.markdown_path.read_text())
    typer.echo(f"wrote {files.json_path}, {files.markdown_path} and {files.confusion_png}")


def _make_command(name: str, parts: tuple[str, ...], doc: str):  # noqa: ANN202 - a Typer command
    def command(
        data: Path | None = typer.Option(None, "--data", help=DATA_HELP),
        checkpoint: Path | None = typer.Option(None, "--checkpoint", help=CHECKPOINT_HELP),
        out: Path = typer.Option(Path("runs/eval"), "--out", help="Folder for the JSON/Markdown reports."),
        split: str = typer.Option("val", "--split", help="Split of --data to evaluate (pipeline, prn)."),
        max_images: int | None = typer.Option(None, "--max-images", min=1, help="Only the first N images."),
        device: str | None = typer.Option(None, "--device", help="cpu, cuda … Default: CUDA when present."),
        folds: int = typer.Option(
            5, "--folds", min=2, help="Activity: cross-validation folds (20 % each at 5)."
        ),
        epochs: int | None = typer.Option(
            None, "--epochs", min=1, help="Activity: epochs per fold (default 60)."
        ),
        seed: int = typer.Option(0, "--seed", help="Folds, fold training and the real-pose overlays."),
        real_poses: bool = typer.Option(
            True, "--real-poses/--no-real-poses", help="PRN: also on real COCO poses overlaid 2–4 to a scene."
        ),
        scenes: int = typer.Option(200, "--scenes", min=1, help="PRN: number of overlaid real-pose scenes."),
        poses: Path | None = typer.Option(
            None, "--poses", help="Activity: a poses JSON (`posestream data poses`)."
        ),
        scales: str | None = typer.Option(
            None, "--scales", help="Pipeline: test-time scales, e.g. 0.75,1.0,1.25 (default: 1.0 only)."
        ),
        flip: bool = typer.Option(
            False, "--flip/--no-flip", help="Pipeline: also run each scale mirrored left-right and average."
        ),
        ceilings: bool = typer.Option(
            False,
            "--ceilings/--no-ceilings",
            help="Pipeline: also the keypoint AP with left/right, the assignment or the detector put right "
            "from the ground truth (model/evaluation/ceilings.py; runs the pipeline once more).",
        ),
        study: bool = typer.Option(
            False,
            "--study",
            help="Activity: the classifier study (issue 22): 6 variants on the same folds → "
            "activity_study.{json,md} + confusion PNG. Without --data/--poses it draws its own poses.",
        ),
    ) -> None:
        from model.test_time import TestTimeAugmentation

        out.mkdir(parents=True, exist_ok=True)
        if study:
            _study(name, out, data, poses, folds, epochs, seed)
            return
        try:
            test_time = TestTimeAugmentation.parse(scales, flip)
            results = _run(
                parts,
                data,
                checkpoint,
                out,
                split,
                max_images,
                device,
                folds,
                epochs,
                seed,
                real_poses,
                scenes,
                poses,
                test_time,
                ceilings=ceilings,
            )
        except ValueError as exc:
            typer.echo(f"error: {exc}", err=True)
            raise typer.Exit(2) from exc
        _finish(results, out, "eval" if name == "all" else f"eval_{name}")

    command.__doc__ = doc
    return command


COMMANDS = {
    "pipeline": (
        ("pipeline",),
        "COCO keypoint AP/AR (OKS) and person box AP/AR of the whole pipeline on --split, and diagnostics: "
        "joint error (px), left/right confusion, keypoint AP with ground-truth boxes.",
    ),
    "prn": (
        ("prn",),
        "PRN alone on ground-truth peaks + boxes: --data's split and real COCO poses overlaid.",
    ),
    "activity": (
        ("activity",),
        "Activity MLP: stratified k-fold CV, per-class P/R/F1, confusion matrix PNG.",
    ),
    "all": (("pipeline", "prn", "activity"), "pipeline + prn + activity, one report."),
}


def register(app: typer.Typer) -> None:
    for name, (parts, doc) in COMMANDS.items():
        eval_app.command(name)(_make_command(name, parts, doc))
    from workers.commands.eval_tracks import register_tracks

    register_tracks(eval_app)
    app.add_typer(eval_app, name="eval")
