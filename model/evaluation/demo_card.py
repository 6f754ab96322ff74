"""The demo checkpoint's card (``model/weights/demo.md``) and its headline figures.

``headline`` picks the figures issue 16 sets targets for (``TARGETS``) out of the evaluation results;
``write_card`` writes the card: where the checkpoint comes from (``provenance``, one paragraph a stage),
the command, date, machine, file digest (read back at load by ``model/checkpoint.py``), the targets met
or not, every evaluation table, the recipe and the time of each step. ``model.evaluation.demo_weights``
makes the checkpoint and calls these at its end.
"""

from __future__ import annotations

import dataclasses
import datetime
import hashlib
import os
import platform
from pathlib import Path
from typing import Any

import torch

from model.evaluation.demo_recipe import REPO, Recipe
from model.train.precision import native_bf16

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
    if recipe.init_checkpoint is None:
        return "Trained from scratch (random weights)."
    previous = recipe.stage - 1
    card = Path(recipe.init_checkpoint).with_suffix(".md")  # written beside every stage's checkpoint
    digest = recipe.init_sha256
    source = f"`{recipe.init_checkpoint}` (sha256 `{digest}`, stage {previous}; its card: `{card}`)"
    kept = "The times below are this stage's only."
    if recipe.prn_noise_active:
        return (
            f"Stage {recipe.stage}, from {source}: the PRN trained {recipe.prn_epochs} more epoch(s) on "
            f"inputs perturbed as the backbone's peaks are (box jitter {recipe.prn_box_jitter:g}, point "
            f"jitter {recipe.prn_point_jitter:g} × √area, left/right mirror {recipe.prn_mirror_prob:g}, "
            f"dropped peaks {recipe.prn_drop_prob:g}; `model/train/prn_noise.py`), then activity trained "
            f"again on the poses it assigns; keypoints and detection are stage {previous}'s, unchanged. "
            + kept
        )
    if recipe.keypoint_freeze_backbone:
        return (
            f"Stage {recipe.stage}, from {source}: the keypoint FPN + subnet trained "
            f"{recipe.keypoint_epochs} more epochs on the kept ResNet trunk (lr {recipe.keypoint_lr:g}, "
            "cosine), then activity trained again on the poses the refined model finds; detection and PRN "
            f"are stage {previous}'s, unchanged. {kept}"
        )
    return (
        f"Stage {recipe.stage}, from {source}: "
        f"{', '.join(recipe.fresh_parts) or 'no part'} trained again from fresh weights on the same "
        f"synthetic set (seed {recipe.seed}) with {recipe.empty_fraction:.0%} of its train images replaced "
        f"by frames without people; every part given 0 epochs below is stage {previous}'s, unchanged. {kept}"
    )


def repo_relative(text: str) -> str:
    """Paths under the repository as ``./…``: the committed card reads the same on every clone."""
    return text.replace(f"{REPO}/", "./")
