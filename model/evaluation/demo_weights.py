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

Stage 2 (``--continue-from CKPT``, ``Recipe.continued``): the run starts from a finished checkpoint; the
parts in ``fresh_parts`` (the detector) are set back to fresh weights and trained again, the parts given
0 epochs are kept as they are, and the synthetic set is the same seed's with ``empty_fraction`` of its
train images replaced by frames that hold nobody (the detector's negatives). The input's sha256 is part
of the recipe. ``make demo-weights`` is stage 1 (from nothing) followed by stage 2 (from stage 1).

Run:  ``python -m model.evaluation.demo_weights [--seed 0] [--smoke] [--continue-from CKPT]``.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import hashlib
import json
import os
import platform
import shlex
import shutil
import sys
import time
from pathlib import Path
from typing import Any

import structlog
import torch

from model.checkpoint import DEFAULT_CHECKPOINT
from model.train.precision import native_bf16, resolve_precision

log = structlog.get_logger()

REPO = Path(__file__).resolve().parent.parent.parent
MAX_CHECKPOINT_BYTES = 50 * 1024 * 1024
UNSEEN_SEED_OFFSET = 1_000_003  # the unseen-scene check draws seed + this: scenes no recipe trains on
# issue 16's targets; "≤" for the false persons per empty frame and the left/right correlation
TARGETS: dict[str, tuple[str, float]] = {
    "keypoint_ap": ("≥", 0.5),
    "box_ap": ("≥", 0.5),
    "prn_gt_ap": ("≥", 0.9),
    "prn_gt_ap_real_poses": ("≥", 0.75),
    "activity_macro_f1": ("≥", 0.9),
    "activity_accuracy_predicted": ("≥", 0.8),
    "left_right_correlation": ("<", 0.5),
    "false_persons_per_empty_frame": ("≤", 0.05),
}


@dataclasses.dataclass(frozen=True)
class Recipe:
    """Sizes of the run. The defaults are the full recipe: ≈ 1.5–2 h on 2 CPU cores with AVX-512 BF16 (see
    demo.md); an AVX2-only CPU trains in fp32 at ≈ 4.1 s a keypoint step, ≈ 5 h in all."""

    seed: int = 0
    images: int = 3000  # synthetic images, train + val (44 images/s to draw: data is cheap, steps are not)
    val_fraction: float = 0.05
    size: int = 480  # synthetic image side = the network's canvas
    max_people: int = 8  # as `posestream data synth` draws by default
    batch_size: int = 8  # keypoints and detection
    # keypoints: person-centred 256 px windows of the 480 canvas (people keep their inference size),
    # bf16 autocast + channels-last where native (2.7× the fp32 samples/s with AVX-512 BF16), Adam with
    # warm-up + cosine
    keypoint_epochs: int = 10  # ≈ 3560 steps of 8 crops
    keypoint_crop: int = 256
    keypoint_lr: float = 5e-4  # 2e-3 (with intermediate weight 0.1) left flat maps: model/train/config.py
    keypoint_warmup_steps: int = 150
    intermediate_weight: float = 1.0
    keypoint_freeze_backbone: bool = False  # stage 3: the keypoint FPN + subnet learn on the kept trunk
    flip_prob: float = 0.5
    centre_jitter: float = 0.15
    detection_epochs: int = 4  # ≈ 1420 steps, frozen backbone, 352 px windows roaming over the canvas
    detection_crop: int = 352
    prn_epochs: int = 12
    prn_real_pose_fraction: float = 0.5
    # stage 4: PRN inputs drawn as the backbone's peaks look (model/train/prn_noise.py; 0: clean truth)
    prn_box_jitter: float = 0.0
    prn_point_jitter: float = 0.0
    prn_mirror_prob: float = 0.0
    prn_drop_prob: float = 0.0
    activity_epochs: int = 40
    pose_extraction_images: int | None = 900  # train images whose predicted poses join activity training
    precision: str = "auto"  # bf16 where the CPU has it natively, else fp32 (model/train/precision.py)
    steps_per_epoch: int | None = None  # cap on batches per epoch (None: the whole train split)
    cv_epochs: int = 60  # activity MLP epochs per cross-validation fold
    eval_images: int | None = None  # val images for the pipeline AP (None: all)
    real_pose_scenes: int = 200
    empty_frames: int = 40
    unseen_scenes: int = 40  # scenes of a seed the recipe never draws, at the display threshold
    workers: int = 1  # DataLoader processes (results do not depend on it)
    empty_fraction: float = 0.0  # train images with nobody in them (detector negatives)
    init_checkpoint: str | None = None  # continue from this finished checkpoint (repo-relative path)
    init_sha256: str | None = None  # ... whose bytes are these
    fresh_parts: tuple[str, ...] = ()  # parts of the input checkpoint trained again from fresh weights

    def epochs_of(self, part: str) -> int:
        """Epochs this recipe gives the trainer ``part`` (keypoints, detection, prn, activity)."""
        return {
            "keypoints": self.keypoint_epochs,
            "detection": self.detection_epochs,
            "prn": self.prn_epochs,
            "activity": self.activity_epochs,
        }[part]

    def continued(self, checkpoint: Path) -> Recipe:
        """Stage 2: from ``checkpoint`` (stage 1), the detector trained again from fresh weights for the
        same epochs on the same images, a tenth of the train images replaced by empty frames (drawn
        backgrounds, noise) — its negatives; keypoints, PRN and activity are kept (0 epochs). Stage 1's
        detector is the control: the one change is the empty frames."""
        return dataclasses.replace(
            self,
            keypoint_epochs=0,
            prn_epochs=0,
            activity_epochs=0,
            empty_fraction=0.1,
            fresh_parts=("detection",),
            init_checkpoint=_repo_path(checkpoint),
            init_sha256=hashlib.sha256(checkpoint.read_bytes()).hexdigest(),
        )

    def refined(self, checkpoint: Path, keypoint_epochs: int = 4) -> Recipe:
        """Stage 3: from ``checkpoint`` (stage 2), the keypoint FPN + subnet trained further on its
        frozen ResNet trunk — the features its detector was trained on do not move, so detection and PRN
        are kept (0 epochs) — at half stage 1's peak lr with a short warm-up; activity trained again on the
        poses the refined model finds. Same synthetic set as stage 1 (seed, no empty frames). The control
        is the input checkpoint: the one change is more keypoint steps on the head."""
        return dataclasses.replace(
            self,
            keypoint_epochs=keypoint_epochs,
            keypoint_lr=self.keypoint_lr / 2,
            keypoint_warmup_steps=50,
            keypoint_freeze_backbone=True,
            detection_epochs=0,
            prn_epochs=0,
            init_checkpoint=_repo_path(checkpoint),
            init_sha256=hashlib.sha256(checkpoint.read_bytes()).hexdigest(),
        )

    def prn_noised(self, checkpoint: Path, prn_epochs: int = 2) -> Recipe:
        """Stage 4: from ``checkpoint`` (stage 3), the PRN trained further on inputs perturbed as the
        backbone's peaks are — loose boxes (0.1 of a side), joints 0.04·√area off, for half of the
        left/right pairs both sides' joints in both channels, a tenth of the peaks missing — at the seed's
        lr; activity trained again on the poses it then assigns. The amounts are those of the one-epoch A/B
        in README.md ("What holds keypoint AP down"): pipeline keypoint AP 0.099 (clean control) → 0.114
        on held-out scenes; 2 epochs, as the epochs A/B there chose (1 / 2 / 4: 0.128 / 0.132 / 0.133 from
        stage 3). Keypoints and detection are kept (0 epochs); the control is the input checkpoint."""
        return dataclasses.replace(
            self,
            keypoint_epochs=0,
            detection_epochs=0,
            prn_epochs=prn_epochs,
            prn_box_jitter=0.1,
            prn_point_jitter=0.04,
            prn_mirror_prob=0.5,
            prn_drop_prob=0.1,
            init_checkpoint=_repo_path(checkpoint),
            init_sha256=hashlib.sha256(checkpoint.read_bytes()).hexdigest(),
        )

    @property
    def prn_noise_active(self) -> bool:
        return any((self.prn_box_jitter, self.prn_point_jitter, self.prn_mirror_prob, self.prn_drop_prob))

    @classmethod
    def smoke(cls, seed: int = 0) -> Recipe:
        """The same steps at toy sizes: proves the recipe end to end in a few minutes."""
        return cls(
            seed=seed,
            images=24,
            val_fraction=0.25,
            size=128,
            max_people=3,
            batch_size=4,
            keypoint_epochs=2,
            keypoint_crop=96,
            keypoint_warmup_steps=2,
            detection_epochs=1,
            detection_crop=128,
            prn_epochs=1,
            activity_epochs=2,
            steps_per_epoch=3,
            cv_epochs=3,
            eval_images=4,
            real_pose_scenes=20,
            empty_frames=4,
            unseen_scenes=3,
            pose_extraction_images=8,
            workers=0,
        )


def _repo_path(path: Path) -> str:
    resolved = path.resolve()
    return str(resolved.relative_to(REPO)) if resolved.is_relative_to(REPO) else str(resolved)


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


def headline(results: dict[str, Any]) -> dict[str, Any]:
    """The figures the issue sets targets for (+ baselines and diagnostics), rounded."""
    real = results["prn"]["real_poses"]
    # `posestream eval` results may lack the recipe-only parts (predicted-pose activity, empty frames)
    diagnostics = results.get("diagnostics", {})
    predicted = results.get("activity_predicted", {})
    empty = results.get("empty_frames", {})
    unseen = results.get("unseen_scenes", {})

    def rounded(value: Any) -> float | None:
        return None if value is None else round(float(value), 4)

    return {
        "keypoint_ap": rounded(results["pipeline"]["keypoints"]["AP"]),
        "keypoint_ar": rounded(results["pipeline"]["keypoints"]["AR"]),
        "box_ap": rounded(results["pipeline"]["bbox"]["AP"]),
        "keypoint_ap_gt_boxes": rounded(diagnostics.get("keypoint_ap_gt_boxes")),
        "median_joint_error_px": rounded(diagnostics.get("median_joint_error_px")),
        "left_right_correlation": rounded(diagnostics.get("left_right_correlation")),
        "prn_gt_ap": rounded(results["prn"]["split"]["network"]["AP"]),
        "prn_gt_ap_baseline": rounded(results["prn"]["split"]["baseline"]["AP"]),
        "prn_gt_ap_real_poses": None if "skipped" in real else rounded(real["network"]["AP"]),
        "prn_gt_ap_real_poses_baseline": None if "skipped" in real else rounded(real["baseline"]["AP"]),
        "activity_macro_f1": rounded(results["activity"]["macro"]["f1"]["mean"]),
        "activity_macro_f1_std": rounded(results["activity"]["macro"]["f1"]["std"]),
        "activity_accuracy": rounded(results["activity"]["macro"]["accuracy"]["mean"]),
        "activity_accuracy_predicted": rounded(predicted.get("accuracy")),
        "activity_matched_fraction": rounded(predicted.get("matched_fraction")),
        "false_persons_per_empty_frame": rounded(empty.get("false_persons_per_frame")),
        "unseen_precision": rounded(unseen.get("precision")),
        "unseen_recall": rounded(unseen.get("recall")),
        "unseen_median_oks": rounded(unseen.get("median_oks")),
        "unseen_mean_pose_median_oks": rounded(unseen.get("mean_pose_median_oks")),
        "unseen_activity_accuracy_predicted": rounded(unseen.get("activity_accuracy_predicted")),
    }


def target_met(figure: float | None, relation: str, target: float) -> bool:
    if figure is None:
        return False
    return {"≥": figure >= target, "<": figure < target, "≤": figure <= target}[relation]


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return (
        f"{platform.system()} {platform.machine()}, {cpu}, {os.cpu_count()} logical CPUs, "
        f"torch {torch.__version__} ({torch.get_num_threads()} threads, CPU capability "
        f"{torch.backends.cpu.get_cpu_capability()}, native bf16: {native_bf16(torch.device('cpu'))}), "
        f"Python {platform.python_version()}"
    )


def write_card(
    path: Path, checkpoint: Path, recipe: Recipe, figures: dict, results: dict, timings: dict, command: str
) -> Path:
    """``checkpoints/demo.md``: what the checkpoint is, how it was made, what it scores."""
    from model.evaluation.report import markdown_table, results_markdown

    size = checkpoint.stat().st_size
    digest = hashlib.sha256(checkpoint.read_bytes()).hexdigest()
    total = sum(t["wall_s"] for t in timings.values())
    target_rows = [
        [
            name,
            f"{relation} {target}",
            figures[name],
            "yes" if target_met(figures[name], relation, target) else "no",
        ]
        for name, (relation, target) in TARGETS.items()
    ]
    recipe_rows = [[field.name, repr(getattr(recipe, field.name))] for field in dataclasses.fields(recipe)]
    timing_rows = [[step, f"{t['wall_s']:.1f}", f"{t['cpu_s']:.1f}"] for step, t in timings.items()]
    body = [
        f"# Demo checkpoint `{checkpoint.name}`",
        "",
        "The `demo` preset (ResNet-18, FPN 128) trained on synthetic people only, all four "
        "parts, stored in half precision and shipped inside the wheel (`model/weights/`). "
        "`posestream infer`, `serve` and `demo` load it by default.",
        "",
        provenance(recipe),
        "",
        f"- command: `{command}`",
        f"- date: {datetime.datetime.now(datetime.UTC).strftime('%Y-%m-%d %H:%M UTC')}",
        f"- machine: {machine()}",
        f"- total time: {total / 60:.1f} min (wall, summed over resumed runs; the CPU may have been shared)",
        # model.checkpoint reads this digest back and checks the default checkpoint against it at load.
        f"- file: {size / 1e6:.1f} MB, sha256 `{digest}` (checked at load: `model/checkpoint.py`)",
        "",
        "## Targets (held-out synthetic data)",
        "",
        markdown_table(["figure", "target", "reached", "met"], target_rows),
        "",
        results_markdown(results, title="Evaluation")
        .replace("# Evaluation", "## Evaluation", 1)
        .replace("\n## ", "\n### "),
        "## Recipe",
        "",
        markdown_table(["parameter", "value"], recipe_rows),
        "",
        "## Time per step",
        "",
        markdown_table(["step", "wall s", "CPU s (this process)"], timing_rows),
        "",
    ]
    path.write_text(repo_relative("\n".join(body)))
    return path


def provenance(recipe: Recipe) -> str:
    """The card's paragraph on where the checkpoint comes from: which stage, from what, what changed."""
    source = f"`{recipe.init_checkpoint}` (sha256 `{recipe.init_sha256}`"
    if recipe.init_checkpoint is None:
        return "Trained from scratch (random weights)."
    if recipe.prn_noise_active:
        return (
            f"Stage 4, from {source}, stage 3; its card is in the git history of this file): the PRN "
            f"trained {recipe.prn_epochs} more epoch(s) on inputs perturbed as the backbone's peaks are "
            f"(box jitter {recipe.prn_box_jitter:g}, point jitter {recipe.prn_point_jitter:g} × √area, "
            f"left/right mirror {recipe.prn_mirror_prob:g}, dropped peaks {recipe.prn_drop_prob:g}; "
            "`model/train/prn_noise.py`), then activity trained again on the poses it assigns; keypoints "
            "and detection are stage 3's, unchanged. The times below are this stage's only."
        )
    if recipe.keypoint_freeze_backbone:
        return (
            f"Stage 3, from {source}, stage 2; its card is in the git history of this file): the keypoint "
            f"FPN + subnet trained {recipe.keypoint_epochs} more epochs on the kept ResNet trunk (lr "
            f"{recipe.keypoint_lr:g}, cosine), then activity trained again on the poses the refined model "
            "finds; detection and PRN are stage 2's, unchanged. The times below are this stage's only."
        )
    return (
        f"Stage 2, from {source}, stage 1, trained from scratch; its card is in the git history of this "
        f"file): {', '.join(recipe.fresh_parts) or 'no part'} trained again from fresh weights on the same "
        f"synthetic set (seed {recipe.seed}) with {recipe.empty_fraction:.0%} of its train images replaced "
        "by frames without people; every part given 0 epochs below is stage 1's, unchanged. The times "
        "below are this stage's only."
    )


def repo_relative(text: str) -> str:
    """Paths under the repository as ``./…``: the committed card reads the same on every clone."""
    return text.replace(f"{REPO}/", "./")


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
