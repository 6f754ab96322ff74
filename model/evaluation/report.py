"""Evaluation results as JSON and as Markdown tables.

The results document is a dict with any of the sections ``pipeline`` (``coco_eval.evaluate_pipeline``),
``diagnostics`` (``diagnostics.pipeline_diagnostics(...).as_dict()``), ``prn`` (``{"split": ...,
"real_poses": ...}`` from ``prn_eval``) and ``activity`` (``activity_cv.cross_validate``), plus free-form
``meta``.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

# The MultiPoseNet paper's PRN figure with ground-truth keypoints and boxes on COCO val.
PAPER_PRN_GT_AP = 0.894


def _plain(value: Any) -> Any:
    """numpy scalars/arrays and paths → JSON-able Python."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, Path):
        return str(value)
    return value


def write_json(results: dict[str, Any], path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(_plain(results), indent=2, sort_keys=False) + "\n")
    return path


def markdown_table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A GitHub Markdown table; floats with 3 decimals, negative COCO stats (no ground truth) as "–"."""

    def cell(value: Any) -> str:
        if isinstance(value, float | np.floating):
            return "–" if value < 0 else f"{float(value):.3f}"
        return str(value).replace("|", "\\|")

    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def _pipeline_section(pipeline: dict[str, Any]) -> list[str]:
    keypoints, boxes = pipeline["keypoints"], pipeline["bbox"]
    lines = [
        "## Whole pipeline (detector + keypoints + PRN), COCO metrics",
        "",
        f"{pipeline['images']} images of `{pipeline['data']}` ({pipeline['split']}), "
        f"{pipeline['ground_truth_persons']} persons annotated, {pipeline['predicted_persons']} predicted; "
        f"model `{pipeline['model_version']}`; {pipeline.get('images_per_second')} images/s.",
        "",
        *(
            [
                f"Persons detected from score {pipeline['score_threshold']} (at most "
                f"{pipeline['max_persons']} per image), below the display threshold: COCO AP needs them.",
                "",
            ]
            if pipeline.get("score_threshold") is not None
            else []
        ),
        markdown_table(
            ["metric", "AP", "AP50", "AP75", "AP (M)", "AP (L)", "AR"],
            [
                ["keypoints (OKS)", *(keypoints[k] for k in ("AP", "AP50", "AP75", "APm", "APl", "AR"))],
                ["person box (IoU)", *(boxes[k] for k in ("AP", "AP50", "AP75", "APm", "APl", "AR100"))],
            ],
        ),
        "",
    ]
    return lines


def _dash(value: Any) -> Any:
    """None (a figure without data) → "–" in a table cell."""
    return "–" if value is None else value


def _diagnostics_section(diagnostics: dict[str, Any]) -> list[str]:
    error, left_right = diagnostics["joint_error"], diagnostics["left_right"]

    def error_row(name: str, stats: dict[str, Any]) -> list[Any]:
        within = stats["within_px"]
        return [
            name,
            stats["joints"],
            _dash(stats["found"]),
            _dash(stats["median_px"]),
            *(_dash(within[key]) for key in within),
        ]

    groups = diagnostics.get("joint_error_by_group", {})
    visibility = diagnostics.get("joint_error_by_visibility", {})
    within_headers = [f"≤ {key[:-2]} px" for key in error["within_px"]]
    pairs = left_right["correlation_by_pair"]
    lines = [
        "## Training diagnostics (keypoint heatmaps of the backbone stage)",
        "",
        f"{diagnostics['images']} images, {diagnostics['persons']} labelled persons. Joint error: distance "
        "(original image pixels) from each labelled ground-truth joint to the nearest peak of its own "
        "channel; found: the channel has a peak at all; *seen* / *hidden*: the joints labelled visible "
        "(v=2) / occluded (v=1).",
        "",
        markdown_table(
            ["joints", "count", "found", "median px", *within_headers],
            [
                error_row("**all**", error),
                *(error_row(name, stats) for name, stats in groups.items()),
                *(error_row(f"*{name}*", stats) for name, stats in visibility.items()),
            ],
        ),
        "",
        f"Left/right: mean Pearson r of the paired channels {_format(left_right['correlation'])} "
        "(≈ 1: the heatmaps do not tell left from right); "
        f"{_format(left_right['closer_opposite'])} of {left_right['lateral_joints']} lateral joints are "
        "nearer a peak of the other side's channel than of their own (a tie counts ½: 0 right, 0.5 chance, "
        "1 swapped).",
        "",
        markdown_table(["pair", *pairs], [["Pearson r", *(_dash(r) for r in pairs.values())]]),
        "",
    ]
    gt_box = diagnostics.get("gt_box_keypoints")
    if gt_box:
        lines += [
            f"Keypoint AP with ground-truth boxes (predicted peaks, {diagnostics.get('gt_box_assignment')} "
            "assignment; no detector):",
            "",
            markdown_table(
                ["metric", "AP", "AP50", "AP75", "AR"],
                [["keypoints (OKS), GT boxes", *(gt_box[k] for k in ("AP", "AP50", "AP75", "AR"))]],
            ),
            "",
        ]
    return lines


def _format(value: Any) -> str:
    return "–" if value is None else f"{float(value):.3f}"


def _prn_section(prn: dict[str, Any]) -> list[str]:
    rows = []
    for key, label in (("split", "synthetic split"), ("real_poses", "real COCO poses, 2–4 overlaid")):
        entry = prn.get(key)
        if not entry:
            continue
        if "skipped" in entry:
            rows.append([label, "skipped", "", "", "", entry["skipped"]])
            continue
        for method in ("network", "baseline"):
            stats = entry[method]
            name = "PRN" if method == "network" else "nearest-peak baseline"
            detail = f"{entry['images']} images, {entry['persons']} persons"
            rows.append([label, name, stats["AP"], stats["AP50"], stats["AP75"], detail])
    lines = [
        "## PRN alone, ground-truth keypoints as peaks and ground-truth boxes",
        "",
        f"(The MultiPoseNet paper: {PAPER_PRN_GT_AP * 100:.1f} AP on COCO val this way.)",
        "",
        markdown_table(["data", "assignment", "AP", "AP50", "AP75", "set"], rows),
        "",
    ]
    return lines


def _activity_section(activity: dict[str, Any]) -> list[str]:
    macro = activity["macro"]

    def pm(entry: dict[str, float]) -> str:
        return f"{entry['mean']:.3f} ± {entry['std']:.3f}"

    rows = [
        [
            name,
            pm(stats["precision"]),
            pm(stats["recall"]),
            pm(stats["f1"]),
            pm(stats["class_accuracy"]),
            stats["support"],
        ]
        for name, stats in activity["per_class"].items()
    ]
    rows.append(
        [
            "**macro**",
            pm(macro["precision"]),
            pm(macro["recall"]),
            pm(macro["f1"]),
            pm(macro["accuracy"]),
            activity["samples"],
        ]
    )
    lines = [
        f"## Activity, {activity['folds']}-fold stratified cross-validation (mean ± std over folds)",
        "",
        markdown_table(["class", "precision", "recall", "F1", "accuracy", "samples"], rows),
        "",
        "(Per class, accuracy is one-vs-rest; the macro row's accuracy is the overall accuracy.)",
        "",
    ]
    if activity.get("confusion_png"):
        lines += [f"Normalised confusion matrix: `{activity['confusion_png']}`", ""]
    return lines


def results_markdown(results: dict[str, Any], title: str = "posestream evaluation") -> str:
    lines = [f"# {title}", ""]
    meta = results.get("meta") or {}
    for key, value in meta.items():
        lines.append(f"- {key}: `{value}`")
    if meta:
        lines.append("")
    if results.get("pipeline"):
        lines += _pipeline_section(results["pipeline"])
    if results.get("diagnostics"):
        lines += _diagnostics_section(results["diagnostics"])
    if results.get("prn"):
        lines += _prn_section(results["prn"])
    if results.get("activity"):
        lines += _activity_section(results["activity"])
    for key, title, note in _FLAT_SECTIONS:
        if results.get(key):
            lines += _flat_section(results[key], title, note)
    return "\n".join(lines).rstrip() + "\n"


_FLAT_SECTIONS = (
    (
        "ceilings",
        "Keypoint AP with one stage put right (stage ceilings)",
        "The pipeline's persons with left/right pairs turned as the ground truth has them, with every joint "
        "on its own channel's peak nearest the truth (perfect assignment), or with the truth's keypoints in "
        "every predicted box (perfect keypoints): what each stage leaves on the table. `part_exact`: perfect "
        "assignment with one joint group's labelled joints put exactly on the truth (what its peaks cost).",
    ),
    (
        "activity_predicted",
        "Activity on predicted poses of held-out persons",
        "Persons the pipeline found (box IoU ≥ 0.5, one-to-one), their activity from the predicted pose.",
    ),
    (
        "unseen_scenes",
        "Unseen scenes at the display threshold",
        "Generated scenes of a seed no recipe trains on, persons as `infer`/`serve` report them; "
        "`mean_pose_median_oks`: a fixed mean pose pasted into each matched box.",
    ),
    ("empty_frames", "Frames without people", "Drawn backgrounds and noise; persons reported on them."),
)


def _flat_section(section: dict[str, Any], title: str, note: str) -> list[str]:
    rows = [[key, value] for key, value in section.items() if not isinstance(value, dict | list)]
    lines = [f"### {title}", "", note, "", markdown_table(["figure", "value"], rows), ""]
    for key, value in section.items():  # a named set of figures (e.g. one per joint group): one row
        if isinstance(value, dict) and value and not any(isinstance(v, dict | list) for v in value.values()):
            lines += [f"`{key}`:", "", markdown_table(list(value), [list(value.values())]), ""]
    return lines


def write_report(results: dict[str, Any], out_dir: str | Path, name: str = "eval") -> tuple[Path, Path]:
    """``OUT/<name>.json`` and ``OUT/<name>.md``."""
    out_dir = Path(out_dir)
    json_path = write_json(results, out_dir / f"{name}.json")
    md_path = out_dir / f"{name}.md"
    md_path.write_text(results_markdown(results))
    return json_path, md_path
