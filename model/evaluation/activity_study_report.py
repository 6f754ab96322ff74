"""The activity study's report: ``activity_study.json``, ``activity_study.md`` (the table: mean ± std over
folds of macro precision, recall, F1 and accuracy) and ``activity_study_confusion.png`` (normalised
confusion matrix of the best still-frame variant by mean F1; ``activity_study_confusion_sequence.png``:
the best on sequence windows).

A variant *clearly beats* the one it is compared with (same samples, same folds) when its F1 is higher in
every fold and its mean gain exceeds the two fold spreads added together.
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import structlog

from model.evaluation.activity_cv import plot_confusion
from model.evaluation.activity_samples import SEQUENCE, STILL, PoseSamples, SequenceRecipe
from model.evaluation.activity_study import (
    STUDY_VARIANTS,
    TEMPORAL,
    StudySettings,
    StudyVariant,
    VariantResult,
    run_study,
)

log = structlog.get_logger()

METRICS = ("precision", "recall", "f1", "accuracy")


@dataclass(frozen=True)
class StudyFiles:
    json_path: Path
    markdown_path: Path
    confusion_png: Path
    sequence_confusion_png: Path | None
    document: dict[str, Any]


@dataclass(frozen=True)
class Comparison:
    """Paired F1 gain of a variant over the one it is compared with, fold by fold."""

    reference: str
    per_fold: tuple[float, ...]
    clearly_better: bool

    @property
    def mean(self) -> float:
        return float(np.mean(self.per_fold))

    @property
    def std(self) -> float:
        return float(np.std(self.per_fold))


def folds_digest(fold_indices: tuple[np.ndarray, ...]) -> str:
    """Short hash of the folds' validation indices: equal digests, equal folds."""
    digest = hashlib.sha1()
    for indices in fold_indices:
        digest.update(np.asarray(indices, np.int64).tobytes() + b"|")
    return digest.hexdigest()[:12]


def compare(result: VariantResult, reference: VariantResult) -> Comparison:
    if folds_digest(result.fold_indices) != folds_digest(reference.fold_indices):
        raise ValueError(
            f"{result.variant.name} and {reference.variant.name} were not scored on the same folds"
        )
    gains = tuple(
        float(a["macro_f1"] - b["macro_f1"])
        for a, b in zip(result.cv["per_fold"], reference.cv["per_fold"], strict=True)
    )
    spread = result.cv["macro"]["f1"]["std"] + reference.cv["macro"]["f1"]["std"]
    clearly = min(gains) > 0 and float(np.mean(gains)) > spread
    return Comparison(reference.variant.name, gains, clearly)


def _variant_entry(result: VariantResult, comparison: Comparison | None) -> dict[str, Any]:
    variant, cv = result.variant, result.cv
    entry: dict[str, Any] = {
        "name": variant.name,
        "description": variant.description,
        "features": variant.features,
        "input_width": variant.input_width,
        "hidden": list(variant.hidden),
        "batchnorm": variant.batchnorm,
        "dropout": variant.dropout,
        "window": variant.window,
        "window_step": variant.window_step,
        "sample_set": variant.samples,
        "samples": cv["samples"],
        "folds_digest": folds_digest(result.fold_indices),
        "seconds": round(result.seconds, 1),
        "macro": {name: cv["macro"][name] for name in METRICS},
        "per_class_f1": {activity: cv["per_class"][activity]["f1"] for activity in cv["activities"]},
        "per_fold": cv["per_fold"],
        "confusion": cv["confusion"],
        "confusion_normalised": cv["confusion_normalised"],
    }
    if comparison is not None:
        entry["f1_gain"] = {
            "compared_with": comparison.reference,
            "mean": comparison.mean,
            "std": comparison.std,
            "per_fold": list(comparison.per_fold),
            "clearly_better": comparison.clearly_better,
        }
    return entry


def _best(results: list[VariantResult], kind: str) -> VariantResult | None:
    chosen = [r for r in results if r.variant.samples == kind]
    return max(chosen, key=lambda r: r.cv["macro"]["f1"]["mean"]) if chosen else None


def study_document(
    results: list[VariantResult],
    samples: dict[str, PoseSamples],
    settings: StudySettings,
    sources: dict[str, str],
) -> dict[str, Any]:
    """Everything the study measured, JSON-able."""
    by_name = {r.variant.name: r for r in results}
    variants = []
    for result in results:
        reference = by_name.get(result.variant.compared_with or "")
        variants.append(_variant_entry(result, compare(result, reference) if reference else None))
    best = {kind: _best(results, kind) for kind in (STILL, SEQUENCE)}
    return {
        "settings": {
            "folds": settings.folds,
            "epochs": settings.epochs,
            "seed": settings.seed,
            "batch_size": settings.batch_size,
            "optimiser": f"Adam lr {settings.lr}",
            "schedule": f"ReduceLROnPlateau ×{settings.plateau_factor}, patience {settings.plateau_patience}",
            "loss": "cross-entropy",
        },
        "sample_sets": {
            kind: {
                "samples": len(s),
                "window": s.window,
                "classes": s.class_counts(),
                "source": sources.get(kind, ""),
                "folds": "grouped by sequence" if kind == SEQUENCE else "stratified",
            }
            for kind, s in samples.items()
        },
        "activities": list(results[0].cv["activities"]),
        "variants": variants,
        "best": {kind: r.variant.name for kind, r in best.items() if r is not None},
        "clearly_beats_seed": [
            v["name"]
            for v in variants
            if v.get("f1_gain", {}).get("clearly_better") and v["sample_set"] == STILL
        ],
    }


def _spread(value: dict[str, float]) -> str:
    return f"{value['mean']:.3f} ± {value['std']:.3f}"


def _network(entry: dict[str, Any]) -> str:
    if not entry["hidden"]:
        return "linear"
    parts = ["→".join(str(h) for h in entry["hidden"])]
    parts.append("BN" if entry["batchnorm"] else "no BN")
    parts.append(f"Dropout {entry['dropout']:g}")
    return ", ".join(parts)


def study_markdown(document: dict[str, Any], command: str = "") -> str:
    settings = document["settings"]
    lines = [
        "## Activity model study",
        "",
        f"{settings['folds']}-fold cross-validation, {settings['epochs']} epochs per fold, "
        f"{settings['optimiser']}, {settings['schedule']}, {settings['loss']}, "
        f"batch {settings['batch_size']}, "
        f"seed {settings['seed']}. Mean ± std over folds of the macro averages (accuracy: overall).",
        "",
        "| variant | features | network | samples | precision | recall | F1 | accuracy | F1 gain (paired) |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for entry in document["variants"]:
        macro = entry["macro"]
        gain = entry.get("f1_gain")
        gain_text = "—"
        if gain:
            gain_text = f"{gain['mean']:+.3f} ± {gain['std']:.3f} vs {gain['compared_with']}"
            gain_text += " **clearly better**" if gain["clearly_better"] else ""
        features = entry["features"]
        if entry["window"] > 1:
            features = f"{entry['window']} frames, step {entry['window_step']} + box motion"
        lines.append(
            f"| {entry['name']} | {features} | {_network(entry)} | "
            f"{entry['sample_set']} {entry['samples']} | "
            + " | ".join(_spread(macro[m]) for m in ("precision", "recall", "f1", "accuracy"))
            + f" | {gain_text} |"
        )
    activities = document["activities"]
    lines += ["", "Per-class F1 (mean ± std over folds):", ""]
    lines += ["| variant | " + " | ".join(activities) + " |", "|---|" + "---|" * len(activities)]
    for entry in document["variants"]:
        lines.append(
            f"| {entry['name']} | " + " | ".join(_spread(entry["per_class_f1"][a]) for a in activities) + " |"
        )
    sets = document["sample_sets"]
    lines += [""]
    for kind, info in sets.items():
        lines.append(
            f"- **{kind}** samples ({info['samples']}; folds: {info['folds']}): {info['source']}; classes "
            + ", ".join(f"{name} {count}" for name, count in info["classes"].items())
            + "."
        )
    lines += [
        "- Rows on *sequence* samples are scored on other samples and folds than the still rows: compare "
        "`temporal` with `seed_sequence` (the seed's MLP on the same windows' last frame, same folds) only.",
        "- *Clearly better*: F1 higher in every fold and the mean gain above the two fold spreads added.",
        f"- Best by mean F1: {', '.join(f'{kind} {name}' for kind, name in document['best'].items())}; "
        "its normalised confusion matrix: `activity_study_confusion.png` (sequence: "
        "`activity_study_confusion_sequence.png`).",
    ]
    if command:
        lines += [
            f"- Command: `{command}`"
            + (f" ({document['wall_seconds']:.0f} s)" if "wall_seconds" in document else "")
        ]
    return "\n".join(lines) + "\n"


def write_study(
    results: list[VariantResult],
    samples: dict[str, PoseSamples],
    settings: StudySettings,
    out: str | Path,
    sources: dict[str, str] | None = None,
    command: str = "",
    wall_seconds: float | None = None,
) -> StudyFiles:
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    document = study_document(results, samples, settings, sources or {})
    if wall_seconds is not None:
        document["wall_seconds"] = round(wall_seconds, 1)
    if command:
        document["command"] = command
    pictures: dict[str, Path] = {}
    names = {STILL: "activity_study_confusion.png", SEQUENCE: "activity_study_confusion_sequence.png"}
    for kind, name in document["best"].items():
        entry = next(v for v in document["variants"] if v["name"] == name)
        title = f"{name} ({kind}): mean F1 {entry['macro']['f1']['mean']:.3f}"
        pictures[kind] = plot_confusion(
            entry["confusion_normalised"], document["activities"], out / names[kind], title
        )
    document["files"] = {kind: str(path) for kind, path in pictures.items()}
    json_path, markdown_path = out / "activity_study.json", out / "activity_study.md"
    json_path.write_text(json.dumps(document, indent=2) + "\n")
    markdown_path.write_text(study_markdown(document, command))
    if STILL not in pictures:
        raise ValueError("the study needs at least one still-frame variant")
    return StudyFiles(json_path, markdown_path, pictures[STILL], pictures.get(SEQUENCE), document)


def activity_study_report(
    out: str | Path,
    settings: StudySettings,
    still: PoseSamples,
    still_source: str,
    recipe: SequenceRecipe | None = SequenceRecipe(),
    variants: tuple[StudyVariant, ...] = STUDY_VARIANTS,
    command: str = "",
) -> StudyFiles:
    """Generate the sequence windows (``recipe``; None: still variants only), run and write the study."""
    from model.evaluation.activity_samples import sequence_samples

    started = time.perf_counter()
    samples = {STILL: still}
    sources = {STILL: still_source}
    if recipe is not None and any(v.samples == SEQUENCE for v in variants):
        samples[SEQUENCE] = sequence_samples(
            recipe, TEMPORAL.window, TEMPORAL.window_step, settings.seed, still.activities
        )
        sources[SEQUENCE] = (
            f"{recipe.sequences} generated sequences (seeds {settings.seed * 1000}…), "
            f"{recipe.frames} frames, "
            f"{recipe.people} people, {recipe.size[0]}×{recipe.size[1]}, a labelled frame every "
            f"{recipe.sample_every} frames per track, ground-truth poses"
        )
    else:
        variants = tuple(v for v in variants if v.samples == STILL)
    results = run_study(samples, settings, variants)
    return write_study(results, samples, settings, out, sources, command, time.perf_counter() - started)


def activity_study_command(
    out: str | Path,
    data: str | Path | None = None,
    poses: str | Path | None = None,
    folds: int = 5,
    epochs: int = 60,
    seed: int = 0,
    still_images: int = 1000,
    recipe: SequenceRecipe | None = None,
    command: str = "",
) -> StudyFiles:
    """``posestream eval activity --study``: still samples from ``poses`` or ``data``, else ``still_images``
    scenes drawn in memory (seed ``seed``); the seed's hyper-parameters; the default sequence recipe."""
    from model.evaluation.activity_samples import generated_still_samples, loaded_still_samples
    from model.predictions import DEFAULT_ACTIVITIES

    if poses is not None or data is not None:
        still = loaded_still_samples(DEFAULT_ACTIVITIES, data, poses)
        source = f"poses of {poses}" if poses is not None else f"ground-truth poses of {data} (train + val)"
    else:
        still = generated_still_samples(still_images, seed)
        source = (
            f"ground-truth poses of {still_images} scenes drawn like `posestream data synth --seed {seed}`"
        )
    settings = StudySettings.seed_hyper(folds, epochs, seed)
    return activity_study_report(
        out, settings, still, source, recipe or SequenceRecipe(), STUDY_VARIANTS, command
    )
