"""``make demo-weights``: the committed demo checkpoint, from nothing, on a CPU.

Synthetic set (480 px) → ``train keypoints`` → ``detection`` → ``prn`` → poses the trained pipeline finds
on the labelled train images → ``activity`` (on those and the ground-truth poses) — the ``demo`` preset,
the training code's own trainers → half precision → evaluation of the half-precision weights (COCO
keypoint/box AP on the synthetic val split at the evaluation thresholds, the diagnostics of
``model.evaluation.diagnostics``, PRN on ground-truth peaks — synthetic and held-out real COCO poses —,
activity 5-fold CV and on predicted poses, false persons on empty frames) → ``model/weights/demo.pt``
(≤ 50 MB, shipped in the wheel) and ``model/weights/demo.md`` (figures, the exact command, date,
machine). Intermediate files go to ``--work-dir`` (``build/demo-weights``, git-ignored).

Resumable: a run stopped anywhere continues from its last completed epoch when started again with the
same recipe (``WORK_DIR/recipe.json``; a different recipe, or ``--fresh``, starts afresh), and ends with
the same checkpoint as an uninterrupted run — every epoch's randomness is a function of (seed, epoch).
Deterministic for a seed on a given machine and thread count: the data are a function of the seed, and
nothing depends on the clock (the recipe is sized by steps, not by time). ``--smoke`` runs the same recipe
with tiny sizes (a few minutes) to prove it works.

Stages 2–4 (``--continue-from`` / ``--refine-from`` / ``--noise-prn-from CKPT``; ``Recipe.continued`` /
``refined`` / ``prn_noised`` in ``model.evaluation.demo_recipe``): the run starts from a finished
checkpoint, whose sha256 is part of the recipe; the parts in ``fresh_parts`` are set back to fresh weights
and trained again, the parts given 0 epochs are kept byte for byte. ``make demo-weights`` runs stage 1
(from nothing) and then each stage from the one before. The card is ``model.evaluation.demo_card``.

Run:  ``python -m model.evaluation.demo_weights [--seed 0] [--smoke] [--continue-from | --refine-from |
--noise-prn-from CKPT]``.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import shlex
import shutil
import sys
import time
from pathlib import Path
from typing import Any

import structlog
import torch

from model.checkpoint import DEFAULT_CHECKPOINT
from model.evaluation.demo_card import headline, write_card
from model.evaluation.demo_recipe import REPO, Recipe
from model.train.precision import resolve_precision

log = structlog.get_logger()

MAX_CHECKPOINT_BYTES = 50 * 1024 * 1024
UNSEEN_SEED_OFFSET = 1_000_003  # the unseen-scene check draws seed + this: scenes no recipe trains on


def _timed(label: str, timings: dict[str, dict[str, float]], function: Any, *args: Any, **kwargs: Any) -> Any:
    wall, cpu = time.perf_counter(), time.process_time()
    result = function(*args, **kwargs)
    timings[label] = {
        "wall_s": round(time.perf_counter() - wall, 1),
        "cpu_s": round(time.process_time() - cpu, 1),
    }
    log.info("demo-weights step done", step=label, **timings[label])
    return result


def make_data(recipe: Recipe, folder: Path) -> dict[str, Any]:
    from model.data.synth import generate_dataset

    shutil.rmtree(folder, ignore_errors=True)
    return generate_dataset(
        folder,
        recipe.images,
        recipe.seed,
        val_fraction=recipe.val_fraction,
        size=(recipe.size, recipe.size),
        max_people=recipe.max_people,
        progress=False,
        empty_fraction=recipe.empty_fraction,
    )


def part_config(recipe: Recipe, part: str, data: Path, checkpoint: Path, runs: Path, poses: Path | None):
    """The demo preset's TrainConfig for one trainer, with this recipe's sizes; resumes a started part."""
    from model.train.config import train_config

    crop = {"keypoints": recipe.keypoint_crop, "detection": recipe.detection_crop}.get(part)
    precision = resolve_precision(recipe.precision, torch.device("cpu"))
    config = train_config(
        "demo",
        data=data,
        poses=poses if part == "activity" else None,
        checkpoint=checkpoint,
        out=runs,
        input_size=recipe.size,
        crop_side=crop,
        precision=precision,
        channels_last=precision == "bf16",  # no gain in fp32 (1.76 against 1.70 s a step on AVX2)
        loader_workers=recipe.workers,
        seed=recipe.seed,
        device="cpu",
        max_steps_per_epoch=recipe.steps_per_epoch,
        progress=False,
    )
    epochs = recipe.epochs_of(part)
    batch = recipe.batch_size if part in ("keypoints", "detection") else None
    config = config.with_overrides(part, epochs, batch, recipe.keypoint_lr if part == "keypoints" else None)
    updates: dict[str, Any] = {}
    if part == "keypoints":
        updates["keypoints"] = config.keypoints.model_copy(
            update={
                "lr_schedule": "cosine",
                "warmup_steps": recipe.keypoint_warmup_steps,
                "intermediate_weight": recipe.intermediate_weight,
                "freeze_backbone": recipe.keypoint_freeze_backbone,
            }
        )
    if part == "prn":
        updates["prn"] = config.prn.model_copy(
            update={
                "real_pose_fraction": recipe.prn_real_pose_fraction,
                "box_jitter": recipe.prn_box_jitter,
                "point_jitter": recipe.prn_point_jitter,
                "mirror_prob": recipe.prn_mirror_prob,
                "drop_prob": recipe.prn_drop_prob,
            }
        )
    updates["augment"] = config.augment.model_copy(
        update={"flip_prob": recipe.flip_prob, "centre_jitter": recipe.centre_jitter}
    )
    return config.model_copy(update=updates)


def train_part(
    recipe: Recipe, part: str, data: Path, checkpoint: Path, runs: Path, timings: dict, poses: Path | None
) -> dict[str, Any]:
    """One trainer (continued from its resume state when it has one); its epochs, steps and last metrics."""
    from model.train.trainers import TRAINERS

    config = part_config(recipe, part, data, checkpoint, runs, poses)
    state = _timed(f"train {part}", timings, TRAINERS[part], config)
    return {"epochs": state.epoch, "steps": state.step, "last": state.history[-1] if state.history else {}}


def kept(recipe: Recipe, part: str) -> bool:
    """A continued run keeps the input checkpoint's ``part`` as it is when it gives the part no epoch."""
    return recipe.init_checkpoint is not None and recipe.epochs_of(part) == 0


def train_activity_on_found_poses(
    recipe: Recipe, data: Path, fp32: Path, runs: Path, poses: Path, timings: dict
) -> dict[str, Any]:
    """The poses the trained pipeline finds on the train images, then activity on those and the
    ground-truth poses (ground-truth poses alone where the pipeline matched nobody)."""
    if not poses.is_file():
        extract_train_poses(recipe, fp32, data, poses, timings)
    found = json.loads(poses.read_text())["summary"]["poses"]
    if not found:  # e.g. --smoke's barely trained detector: ground-truth poses alone
        log.warning("the trained pipeline matched no person on the train images", poses=str(poses))
    return train_part(recipe, "activity", data, fp32, runs, timings, poses if found else None)


def start_from(recipe: Recipe, fp32: Path) -> None:
    """The continued run's starting point: the input checkpoint (checked against the recipe's digest),
    in fp32, with its trained parts."""
    from model.checkpoint import load_checkpoint, save_checkpoint

    source = Path(recipe.init_checkpoint or "")
    source = source if source.is_absolute() else REPO / source
    digest = hashlib.sha256(source.read_bytes()).hexdigest()
    if digest != recipe.init_sha256:
        raise ValueError(f"{source} has sha256 {digest}, the recipe was made for {recipe.init_sha256}")
    model, meta = load_checkpoint(source)
    if recipe.fresh_parts:
        from model.multiposenet import MultiPoseNet

        torch.manual_seed(recipe.seed)
        fresh = MultiPoseNet(model.config)  # the initialisation a from-scratch run gives these parts
        for part in recipe.fresh_parts:
            model.load_part_state_dict(part, fresh.part_state_dict(part))
            model.trained_parts.discard(part)
    save_checkpoint(fp32, model, version=str(meta["version"]))
    log.info(
        "continuing from",
        checkpoint=str(source),
        version=meta["version"],
        kept=sorted(model.trained_parts),
        fresh=list(recipe.fresh_parts),
    )


def extract_train_poses(recipe: Recipe, checkpoint: Path, data: Path, out: Path, timings: dict) -> Path:
    """Poses the trained detector + keypoints + PRN find on the labelled train images, with the matched
    person's activity: the seed trains its activity MLP on such model-extracted poses."""
    from model.train.samples import extract_activity_poses

    return _timed(
        "extract train poses",
        timings,
        extract_activity_poses,
        checkpoint,
        data,
        "train",
        out,
        max_images=recipe.pose_extraction_images,
        device="cpu",
    )


def to_half(source: Path, target: Path, version: str) -> Path:
    from model.checkpoint import load_checkpoint, save_checkpoint

    model, _ = load_checkpoint(source)
    return save_checkpoint(target, model, version=version, half=True)


def evaluate(recipe: Recipe, checkpoint: Path, data: Path, out: Path, timings: dict) -> dict[str, Any]:
    """Pipeline AP + diagnostics, PRN on ground-truth peaks (synthetic val + held-out real poses), activity
    k-fold CV on ground-truth poses and on the predicted poses of held-out persons, empty frames."""
    from model.checkpoint import load_checkpoint
    from model.evaluation.activity_cv import (
        activity_cv_report,
        activity_poses,
        evaluate_activity_on_predicted,
    )
    from model.evaluation.coco_eval import evaluate_pipeline
    from model.evaluation.diagnostics import pipeline_diagnostics
    from model.evaluation.empty_frames import evaluate_empty_frames
    from model.evaluation.prn_eval import evaluate_prn_real_poses, evaluate_prn_split
    from model.evaluation.unseen_scenes import check_unseen_scenes
    from model.pipeline import PosePipeline

    model, meta = load_checkpoint(checkpoint)
    pipeline = PosePipeline(model, str(meta["version"]), "cpu")
    results: dict[str, Any] = {}
    results["pipeline"] = _timed(
        "eval pipeline", timings, evaluate_pipeline, pipeline, data, "val", recipe.eval_images, 4, out
    )
    results["diagnostics"] = _timed(
        "eval diagnostics", timings, pipeline_diagnostics, pipeline, data, "val", recipe.eval_images
    ).as_dict()
    prn = model.prn.cpu().eval()
    results["prn"] = {
        "split": _timed("eval prn (synthetic)", timings, evaluate_prn_split, prn, data, "val"),
        "real_poses": _timed(
            "eval prn (real poses)",
            timings,
            evaluate_prn_real_poses,
            prn,
            recipe.real_pose_scenes,
            recipe.seed,
        ),
    }
    features, labels, activities = activity_poses(data, model.activities)
    results["activity"] = _timed(
        "eval activity 5-fold",
        timings,
        activity_cv_report,
        features,
        labels,
        activities,
        model.config,
        out,
        folds=5,
        seed=recipe.seed,
        epochs=recipe.cv_epochs,
    )
    results["activity_predicted"] = _timed(
        "eval activity (predicted poses)",
        timings,
        evaluate_activity_on_predicted,
        pipeline,
        data,
        "val",
        recipe.eval_images,
    )
    results["unseen_scenes"] = _timed(
        "eval unseen scenes",
        timings,
        check_unseen_scenes,
        pipeline,
        UNSEEN_SEED_OFFSET + recipe.seed,
        recipe.unseen_scenes,
        recipe.size,
        recipe.max_people,
    ).as_dict()
    size = (recipe.size, recipe.size)
    results["empty_frames"] = _timed(
        "eval empty frames", timings, evaluate_empty_frames, pipeline, recipe.empty_frames, recipe.seed, size
    ).as_dict()
    return results


def build(
    recipe: Recipe, out: Path, work_dir: Path, command: str, version: str, fresh: bool = False
) -> dict[str, Any]:
    """The whole recipe, continued where a stopped run of the same recipe left off; returns the headline
    figures (also written into the checkpoint and the card)."""
    from model.checkpoint import load_checkpoint, save_checkpoint
    from model.evaluation.report import write_report

    work_dir.mkdir(parents=True, exist_ok=True)
    data, fp32, runs, eval_dir = (
        work_dir / "data",
        work_dir / "model_fp32.pt",
        work_dir / "runs",
        work_dir / "eval",
    )
    poses = work_dir / "train_poses.json"
    recipe_file, timings_file = work_dir / "recipe.json", work_dir / "timings.json"
    recipe_text = json.dumps(dataclasses.asdict(recipe), sort_keys=True)
    resuming = not fresh and recipe_file.is_file() and recipe_file.read_text() == recipe_text
    if not resuming:
        for path in (data, runs, eval_dir):
            shutil.rmtree(path, ignore_errors=True)
        for path in (fp32, poses, timings_file):
            path.unlink(missing_ok=True)
        recipe_file.write_text(recipe_text)
    log.info("demo-weights", resuming=resuming, work_dir=str(work_dir))
    timings: dict[str, dict[str, float]] = (
        json.loads(timings_file.read_text()) if timings_file.is_file() else {}
    )

    def save_timings() -> None:  # kept across resumed runs: the card sums them
        timings_file.write_text(json.dumps(timings, indent=1))

    torch.manual_seed(recipe.seed)
    if not (data / "COMPLETE").is_file():
        _timed("synthetic data", timings, make_data, recipe, data)
        (data / "COMPLETE").write_text(recipe_text)
        save_timings()
    if recipe.init_checkpoint is not None and not fp32.is_file():
        start_from(recipe, fp32)
    history: dict[str, Any] = {}
    for part in ("keypoints", "detection", "prn"):
        if kept(recipe, part):
            history[part] = {"kept_from": recipe.init_checkpoint}
            continue
        history[part] = train_part(recipe, part, data, fp32, runs, timings, None)
        save_timings()
    if kept(recipe, "activity"):
        history["activity"] = {"kept_from": recipe.init_checkpoint}
    else:
        history["activity"] = train_activity_on_found_poses(recipe, data, fp32, runs, poses, timings)
        save_timings()
    half = to_half(fp32, work_dir / "model_fp16.pt", version)
    results = evaluate(recipe, half, data, eval_dir, timings)
    save_timings()
    figures = headline(results)
    results["meta"] = {"checkpoint": str(out), "version": version, "command": command}
    write_report(results, eval_dir, "eval")
    # the shipped file: the evaluated fp16 weights (fp16 → fp32 → fp16 is exact) + figures + recipe
    model, _ = load_checkpoint(half)
    extra = {"figures": figures, "recipe": dataclasses.asdict(recipe), "training": _plain_history(history)}
    out.parent.mkdir(parents=True, exist_ok=True)
    save_checkpoint(out, model, version=version, half=True, extra=extra)
    if out.stat().st_size > MAX_CHECKPOINT_BYTES:
        raise ValueError(f"{out} is {out.stat().st_size / 1e6:.1f} MB, over the 50 MB limit")
    card = write_card(out.with_suffix(".md"), out, recipe, figures, results, timings, command)
    log.info("demo checkpoint written", checkpoint=str(out), card=str(card), **figures)
    (eval_dir / "figures.json").write_text(json.dumps({"figures": figures, "timings": timings}, indent=2))
    return figures


def _plain_history(history: dict[str, Any]) -> dict[str, Any]:
    return json.loads(json.dumps(history, default=float))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m model.evaluation.demo_weights", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--smoke", action="store_true", help="toy sizes: the whole recipe in a few minutes")
    parser.add_argument(
        "--out",
        type=Path,
        default=None,
        help="checkpoint to write (default model/weights/demo.pt; with --smoke: WORK_DIR/demo-smoke.pt)",
    )
    parser.add_argument("--work-dir", type=Path, default=REPO / "build" / "demo-weights")
    parser.add_argument(
        "--images", type=int, default=None, help="override the recipe's synthetic image count"
    )
    parser.add_argument("--keypoint-epochs", type=int, default=None)
    parser.add_argument("--prn-epochs", type=int, default=None)
    parser.add_argument("--steps-per-epoch", type=int, default=None)
    parser.add_argument(
        "--stage", type=int, default=None, help="the stage number on the card (5: --refine-from stage 4)"
    )
    parser.add_argument("--record-command", default=None, help="the command to write into the card")
    parser.add_argument(
        "--fresh", action="store_true", help="start afresh even where WORK_DIR holds a run of this recipe"
    )
    parser.add_argument(
        "--continue-from",
        type=Path,
        default=None,
        help="stage 2: continue from this finished checkpoint on a fresh set of --seed (see the docstring)",
    )
    parser.add_argument(
        "--refine-from",
        type=Path,
        default=None,
        help="stage 3: the keypoint head trained further on this checkpoint's frozen trunk (Recipe.refined)",
    )
    parser.add_argument(
        "--noise-prn-from",
        type=Path,
        default=None,
        help="stage 4: the PRN trained further on peak-like inputs, from this checkpoint (Recipe.prn_noised)",
    )
    args = parser.parse_args(argv)
    recipe = Recipe.smoke(args.seed) if args.smoke else Recipe(seed=args.seed)
    overrides = {
        key: value
        for key, value in {
            "images": args.images,
            "keypoint_epochs": args.keypoint_epochs,
            "prn_epochs": args.prn_epochs,
            "steps_per_epoch": args.steps_per_epoch,
            "stage": args.stage,
        }.items()
        if value is not None
    }
    stages = {
        "--continue-from": (args.continue_from, Recipe.continued, "+empty-frames"),
        "--refine-from": (args.refine_from, Recipe.refined, "+keypoint-head"),
        "--noise-prn-from": (args.noise_prn_from, Recipe.prn_noised, "+noisy-prn"),
    }
    chosen = [(flag, *stage) for flag, stage in stages.items() if stage[0] is not None]
    if len(chosen) > 1:
        parser.error(f"{' and '.join(flag for flag, *_ in chosen)} exclude each other (one stage a run)")
    if chosen:
        _, source, continued, suffix = chosen[0]
        recipe = continued(recipe, source)
    recipe = dataclasses.replace(recipe, **overrides)
    out = args.out or (args.work_dir / "demo-smoke.pt" if args.smoke else DEFAULT_CHECKPOINT)
    arguments = sys.argv[1:] if argv is None else argv
    command = args.record_command or shlex.join(["python", "-m", "model.evaluation.demo_weights", *arguments])
    version = f"demo-synthetic-seed{recipe.seed}" + ("-smoke" if args.smoke else "")
    if chosen:
        from model.checkpoint import load_checkpoint

        version = f"{load_checkpoint(source)[1]['version']}{suffix}"
    figures = build(recipe, out, args.work_dir, command, version, fresh=args.fresh)
    print(json.dumps(figures, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
