"""The activity model study (issue 22): the seed's "different settings" of its activity classifier,
cross-validated on the same folds with the seed's training (Adam 1e-3, ReduceLROnPlateau ×0.1,
cross-entropy, 5 folds; ``ActivityHyper``'s batch and patience).

Still-frame variants share one set of samples and one set of stratified folds. The temporal variant
needs a track's earlier frames, so it is scored on windows of generated sequences; the seed's classifier
is scored on the very same windows (their last frame alone) and folds, and the two are compared with each
other only. Sequence folds keep a whole sequence together: neighbouring frames are near copies, and a
frame in the validation fold with its neighbour in training would flatter every classifier.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import structlog
import torch

from model.activity import ActivityClassifier
from model.config import ModelConfig
from model.evaluation.activity_cv import cross_validate_on_folds, stratified_folds
from model.evaluation.activity_features import (
    KEYPOINT_WIDTH,
    LIMB_WIDTH,
    keypoint_features,
    keypoint_limb_features,
    window_features,
    window_width,
)
from model.evaluation.activity_samples import SEQUENCE, STILL, PoseSamples

log = structlog.get_logger()

KEYPOINTS, KEYPOINTS_LIMBS, WINDOW = "keypoints", "keypoints + limb angles/ratios", "window"
SEED_HIDDEN = (3072, 128)


@dataclass(frozen=True)
class StudyVariant:
    """One classifier setting of the study."""

    name: str
    description: str
    features: str  # KEYPOINTS, KEYPOINTS_LIMBS or WINDOW
    hidden: tuple[int, ...]  # hidden Dense widths; () = a linear softmax classifier
    batchnorm: bool
    dropout: float
    samples: str  # STILL or SEQUENCE: which sample set (and folds) it is scored on
    window: int = 1  # frames of the track fed to it (1: the labelled frame alone)
    window_step: int = 1  # frames between two window entries
    compared_with: str | None = None  # the variant on the same samples and folds it is measured against

    def __post_init__(self) -> None:
        if self.features not in (KEYPOINTS, KEYPOINTS_LIMBS, WINDOW):
            raise ValueError(f"unknown feature kind {self.features!r}")
        if (self.features == WINDOW) != (self.window > 1):
            raise ValueError(f"{self.name}: window features need a window of 2+ frames, and only they do")
        if self.window > 1 and self.samples != SEQUENCE:
            raise ValueError(f"{self.name}: a window needs sequence samples")

    @property
    def input_width(self) -> int:
        if self.features == WINDOW:
            return window_width(self.window)
        return KEYPOINT_WIDTH + (LIMB_WIDTH if self.features == KEYPOINTS_LIMBS else 0)

    def classifier(self, activities: tuple[str, ...]) -> ActivityClassifier:
        """A fresh network; for ``seed`` exactly the served ``ActivityClassifier`` of the demo preset."""
        config = ModelConfig.preset(
            "demo", activities=activities, activity_hidden=self.hidden, activity_dropout=self.dropout
        )
        return ActivityClassifier(config, input_width=self.input_width, batchnorm=self.batchnorm)

    def features_of(self, samples: PoseSamples) -> torch.Tensor:
        """(N, input_width) float32 features of ``samples``."""
        if samples.kind != self.samples:
            raise ValueError(f"{self.name} is scored on {self.samples} samples, got {samples.kind}")
        keypoints, boxes = torch.from_numpy(samples.keypoints), torch.from_numpy(samples.boxes)
        if self.features == WINDOW:
            if samples.window != self.window:
                raise ValueError(f"{self.name} needs {self.window}-frame windows, got {samples.window}")
            return window_features(keypoints, boxes)
        last_keypoints, last_boxes = keypoints[:, -1], boxes[:, -1]  # the labelled frame
        if self.features == KEYPOINTS_LIMBS:
            return keypoint_limb_features(last_keypoints, last_boxes)
        return keypoint_features(last_keypoints, last_boxes)


SEED = StudyVariant(
    name="seed",
    description="the seed's MLP 3072→128, BatchNorm, Dropout 0.3 (the served classifier)",
    features=KEYPOINTS,
    hidden=SEED_HIDDEN,
    batchnorm=True,
    dropout=0.3,
    samples=STILL,
)
SEED_SEQUENCE = replace(
    SEED,
    name="seed_sequence",
    description="the seed's MLP on the temporal variant's samples, the labelled frame alone",
    samples=SEQUENCE,
)
TEMPORAL = replace(
    SEED,
    name="temporal",
    description="the seed's MLP fed the track's last 5 poses (every 2nd frame, 0.32 s) + box motion",
    features=WINDOW,
    samples=SEQUENCE,
    window=5,
    window_step=2,
    compared_with=SEED_SEQUENCE.name,
)
STUDY_VARIANTS: tuple[StudyVariant, ...] = (
    SEED,
    replace(
        SEED,
        name="no_batchnorm",
        description="3072→128, Dropout 0.3, no BatchNorm",
        batchnorm=False,
        compared_with="seed",
    ),
    replace(
        SEED,
        name="small",
        description="512→128, BatchNorm, Dropout 0.3",
        hidden=(512, 128),
        compared_with="seed",
    ),
    replace(
        SEED,
        name="linear",
        description="linear baseline (softmax regression on the 51 inputs)",
        hidden=(),
        batchnorm=False,
        dropout=0.0,
        compared_with="seed",
    ),
    replace(
        SEED,
        name="limbs",
        description="the seed's MLP + sin/cos of each limb's angle + limb / torso length",
        features=KEYPOINTS_LIMBS,
        compared_with="seed",
    ),
    SEED_SEQUENCE,
    TEMPORAL,
)


def grouped_folds(labels: np.ndarray, groups: np.ndarray, folds: int = 5, seed: int = 0) -> list[np.ndarray]:
    """Validation indices of each fold with every group in one fold: groups (shuffled by ``seed``, the
    largest first) go one by one to the fold whose class counts they bring closest to an even share."""
    labels, groups = np.asarray(labels), np.asarray(groups)
    if folds < 2:
        raise ValueError(f"need at least 2 folds, got {folds}")
    names, group_of = np.unique(groups, return_inverse=True)
    if len(names) < folds:
        raise ValueError(f"{len(names)} groups cannot fill {folds} folds")
    classes, class_of = np.unique(labels, return_inverse=True)
    counts = np.zeros((len(names), len(classes)))  # (groups, classes)
    np.add.at(counts, (group_of, class_of), 1)
    target = counts.sum(axis=0) / folds  # (classes,) an even share per fold
    shuffled = np.random.default_rng(seed).permutation(len(names))
    order = shuffled[np.argsort(-counts[shuffled].sum(axis=1), kind="stable")]
    filled = np.zeros((folds, len(classes)))
    assigned = np.zeros(len(names), np.int64)
    for group in order:
        costs = []
        for fold in range(folds):
            trial = filled.copy()
            trial[fold] += counts[group]
            costs.append((float((((trial - target) / target) ** 2).sum()), trial.sum(axis=1)[fold]))
        best = min(range(folds), key=costs.__getitem__)
        filled[best] += counts[group]
        assigned[group] = best
    return [np.flatnonzero(assigned[group_of] == fold) for fold in range(folds)]


def folds_of(samples: PoseSamples, folds: int, seed: int) -> list[np.ndarray]:
    """Still: stratified folds of the samples; sequences: folds of whole sequences."""
    if samples.kind == STILL:
        return stratified_folds(samples.labels, folds, seed)
    return grouped_folds(samples.labels, samples.groups, folds, seed)


@dataclass(frozen=True)
class StudySettings:
    folds: int = 5
    epochs: int = 60
    seed: int = 0
    batch_size: int = 32
    lr: float = 1e-3
    plateau_factor: float = 0.1
    plateau_patience: int = 5

    @classmethod
    def seed_hyper(cls, folds: int = 5, epochs: int = 60, seed: int = 0) -> StudySettings:
        """The seed's activity hyper-parameters (``ActivityHyper``) with these folds, epochs and seed."""
        from model.train.config import ActivityHyper

        hyper = ActivityHyper()
        return cls(
            folds, epochs, seed, hyper.batch_size, hyper.lr, hyper.plateau_factor, hyper.plateau_patience
        )


@dataclass(frozen=True)
class VariantResult:
    variant: StudyVariant
    cv: dict[str, Any]  # ``cross_validate_on_folds``' report
    fold_indices: tuple[np.ndarray, ...]  # validation indices of each fold
    seconds: float


def score_variant(
    variant: StudyVariant,
    features: torch.Tensor,
    labels: torch.Tensor,
    activities: tuple[str, ...],
    fold_indices: list[np.ndarray],
    settings: StudySettings,
) -> VariantResult:
    """Cross-validate ``variant`` on features (N, F), labels (N,) over the given folds."""
    if features.shape[1] != variant.input_width:
        raise ValueError(f"{variant.name} takes {variant.input_width} features, got {features.shape[1]}")
    started = time.perf_counter()
    with structlog.contextvars.bound_contextvars(variant=variant.name):
        cv = cross_validate_on_folds(
            features,
            labels,
            activities,
            fold_indices,
            ModelConfig.preset("demo", activities=activities),
            seed=settings.seed,
            epochs=settings.epochs,
            batch_size=settings.batch_size,
            lr=settings.lr,
            plateau_factor=settings.plateau_factor,
            plateau_patience=settings.plateau_patience,
            classifier_factory=lambda: variant.classifier(activities),
        )
    seconds = time.perf_counter() - started
    log.info(
        "activity study variant",
        variant=variant.name,
        macro_f1=round(cv["macro"]["f1"]["mean"], 4),
        seconds=round(seconds, 1),
    )
    return VariantResult(variant, cv, tuple(fold_indices), seconds)


def run_study(
    samples: dict[str, PoseSamples],
    settings: StudySettings,
    variants: tuple[StudyVariant, ...] = STUDY_VARIANTS,
) -> list[VariantResult]:
    """Every variant on its sample set (``samples[variant.samples]``), all of one set on the same folds."""
    missing = sorted({v.samples for v in variants} - set(samples))
    if missing:
        raise ValueError(f"variants need {missing} samples")
    activity_sets = {s.activities for s in samples.values()}
    if len(activity_sets) != 1:
        raise ValueError(f"sample sets disagree on the activities: {activity_sets}")
    folds = {kind: folds_of(s, settings.folds, settings.seed) for kind, s in samples.items()}
    results = []
    for variant in variants:
        chosen = samples[variant.samples]
        features = variant.features_of(chosen)
        labels = torch.from_numpy(chosen.labels)
        results.append(
            score_variant(variant, features, labels, chosen.activities, folds[variant.samples], settings)
        )
    return results
