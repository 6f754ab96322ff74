"""Activity classifier: stratified k-fold cross-validation, as in the seed (5 folds, 20 % held out each).

Each fold trains a fresh ``ActivityClassifier`` the seed's way (Adam 1e-3, ReduceLROnPlateau ×0.1 on the
training loss, categorical cross-entropy; epochs/batch/patience from ``ActivityHyper``) on the other
folds and is scored on its own: per-class precision, recall, F1 and one-vs-rest accuracy, their macro
averages and the overall accuracy, then mean and spread (std) over folds. The confusion matrix sums the
folds' (every sample is predicted exactly once) and is normalised per true class.

(The training code's ``train_activity`` reads its data and splits it itself, so it cannot train on a
given fold; the loop here uses the same optimiser, schedule and loss.)
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import structlog
import torch

from model.activity import ActivityClassifier
from model.config import ModelConfig

log = structlog.get_logger()


def stratified_folds(labels: np.ndarray, folds: int = 5, seed: int = 0) -> list[np.ndarray]:
    """Validation indices of each fold: every sample in exactly one; each class spread evenly over the
    folds (shuffled by ``seed``), so each fold holds ~1/``folds`` of every class."""
    labels = np.asarray(labels)
    if folds < 2:
        raise ValueError(f"need at least 2 folds, got {folds}")
    if len(labels) < folds:
        raise ValueError(f"{len(labels)} samples cannot fill {folds} folds")
    rng = np.random.default_rng(seed)
    members: list[list[int]] = [[] for _ in range(folds)]
    offset = 0  # rotate the start so small classes do not all land in fold 0
    for label in np.unique(labels):
        indices = rng.permutation(np.flatnonzero(labels == label))
        for position, index in enumerate(indices):
            members[(position + offset) % folds].append(int(index))
        offset += len(indices)
    return [np.sort(np.asarray(m, dtype=np.int64)) for m in members]


def classification_metrics(truth: np.ndarray, predicted: np.ndarray, classes: int) -> dict[str, Any]:
    """Confusion matrix (rows = truth) and per-class precision / recall / F1 / one-vs-rest accuracy /
    support, their macro averages and the overall accuracy. A class never predicted has precision 0."""
    truth, predicted = np.asarray(truth, np.int64), np.asarray(predicted, np.int64)
    confusion = np.zeros((classes, classes), np.int64)
    np.add.at(confusion, (truth, predicted), 1)
    true_positive = np.diag(confusion).astype(np.float64)
    predicted_count = confusion.sum(axis=0)
    support = confusion.sum(axis=1)
    total = max(int(confusion.sum()), 1)
    precision = np.divide(true_positive, predicted_count, out=np.zeros(classes), where=predicted_count > 0)
    recall = np.divide(true_positive, support, out=np.zeros(classes), where=support > 0)
    denominator = precision + recall
    f1 = np.divide(2 * precision * recall, denominator, out=np.zeros(classes), where=denominator > 0)
    true_negative = total - support - predicted_count + true_positive
    class_accuracy = (true_positive + true_negative) / total
    return {
        "confusion": confusion,
        "precision": precision,
        "recall": recall,
        "f1": f1,
        "class_accuracy": class_accuracy,
        "support": support,
        "macro_precision": float(precision.mean()),
        "macro_recall": float(recall.mean()),
        "macro_f1": float(f1.mean()),
        "accuracy": float(true_positive.sum() / total),
    }


def train_classifier(
    features: torch.Tensor,
    labels: torch.Tensor,
    config: ModelConfig,
    epochs: int,
    batch_size: int = 32,
    lr: float = 1e-3,
    plateau_factor: float = 0.1,
    plateau_patience: int = 5,
    seed: int = 0,
    classifier_factory: Callable[[], ActivityClassifier] | None = None,
) -> ActivityClassifier:
    """A fresh classifier trained on (features (N, F), labels (N,)): Adam + ReduceLROnPlateau + CE.
    ``classifier_factory`` builds another classifier (the study's variants); default: the seed's MLP."""
    torch.manual_seed(seed)  # before building: the same seed gives the same initial weights
    classifier = classifier_factory() if classifier_factory is not None else ActivityClassifier(config)
    optimizer = torch.optim.Adam(classifier.parameters(), lr=lr)
    scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(
        optimizer, mode="min", factor=plateau_factor, patience=plateau_patience
    )
    generator = torch.Generator().manual_seed(seed)
    count = len(labels)
    classifier.train()
    for _ in range(epochs):
        order = torch.randperm(count, generator=generator)
        total = 0.0
        for start in range(0, count, batch_size):
            batch = order[start : start + batch_size]
            if len(batch) < 2:  # BatchNorm needs two samples in training mode
                continue
            loss = classifier.loss(classifier(features[batch]), labels[batch])["activity"]
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            total += float(loss.detach()) * len(batch)
        scheduler.step(total / count)
    return classifier.eval()


def cross_validate(
    features: torch.Tensor,
    labels: torch.Tensor,
    activities: tuple[str, ...],
    folds: int = 5,
    seed: int = 0,
    epochs: int = 60,
    batch_size: int = 32,
    config: ModelConfig | None = None,
    **train_options: Any,
) -> dict[str, Any]:
    """Stratified k-fold CV of the activity MLP → per-fold and aggregated metrics (JSON-able) and the
    normalised confusion matrix (under ``"confusion_normalised"``)."""
    config = config or ModelConfig.preset("demo", activities=tuple(activities))
    if tuple(config.activities) != tuple(activities):
        config = config.model_copy(update={"activities": tuple(activities)})
    fold_indices = stratified_folds(labels.numpy(), folds, seed)
    return cross_validate_on_folds(
        features, labels, activities, fold_indices, config, seed, epochs, batch_size, **train_options
    )


def cross_validate_on_folds(
    features: torch.Tensor,
    labels: torch.Tensor,
    activities: tuple[str, ...],
    fold_indices: Sequence[np.ndarray],
    config: ModelConfig,
    seed: int = 0,
    epochs: int = 60,
    batch_size: int = 32,
    **train_options: Any,
) -> dict[str, Any]:
    """``cross_validate`` on given folds (validation indices of each), so that several classifiers can be
    scored on the very same folds; ``train_options`` go to ``train_classifier``."""
    labels_np = labels.numpy()
    classes = len(activities)
    confusion = np.zeros((classes, classes), np.int64)
    per_fold: list[dict[str, Any]] = []
    for fold, val_index in enumerate(fold_indices):
        train_mask = np.ones(len(labels_np), bool)
        train_mask[val_index] = False
        train_index = torch.from_numpy(np.flatnonzero(train_mask))
        classifier = train_classifier(
            features[train_index],
            labels[train_index],
            config,
            epochs,
            batch_size,
            seed=seed + fold,
            **train_options,
        )
        with torch.no_grad():
            predicted = classifier(features[torch.from_numpy(val_index)]).argmax(1).numpy()
        metrics = classification_metrics(labels_np[val_index], predicted, classes)
        confusion += metrics["confusion"]
        per_fold.append(metrics)
        log.info(
            "activity fold",
            fold=fold,
            macro_f1=round(metrics["macro_f1"], 4),
            accuracy=round(metrics["accuracy"], 4),
        )
    return _aggregate(per_fold, confusion, activities, seed, epochs, len(labels_np))


def _aggregate(
    per_fold: list[dict[str, Any]],
    confusion: np.ndarray,
    activities: tuple[str, ...],
    seed: int,
    epochs: int,
    samples: int,
) -> dict[str, Any]:
    def spread(values: list[float] | np.ndarray) -> dict[str, float]:
        values = np.asarray(values, np.float64)
        return {"mean": float(values.mean(axis=0)), "std": float(values.std(axis=0))}

    macro = {
        name: spread([fold[key] for fold in per_fold])
        for name, key in (
            ("precision", "macro_precision"),
            ("recall", "macro_recall"),
            ("f1", "macro_f1"),
            ("accuracy", "accuracy"),
        )
    }
    per_class = {
        activity: {
            metric: spread([fold[metric][index] for fold in per_fold])
            for metric in ("precision", "recall", "f1", "class_accuracy")
        }
        | {"support": int(sum(int(fold["support"][index]) for fold in per_fold))}
        for index, activity in enumerate(activities)
    }
    row_sums = confusion.sum(axis=1, keepdims=True)
    normalised = np.divide(confusion, row_sums, out=np.zeros(confusion.shape), where=row_sums > 0)
    return {
        "folds": len(per_fold),
        "samples": samples,
        "seed": seed,
        "epochs": epochs,
        "activities": list(activities),
        "macro": macro,
        "per_class": per_class,
        "per_fold": [
            {k: fold[k] for k in ("macro_precision", "macro_recall", "macro_f1", "accuracy")}
            for fold in per_fold
        ],
        "confusion": confusion.tolist(),
        "confusion_normalised": normalised.round(4).tolist(),
    }


def plot_confusion(
    normalised: list[list[float]] | np.ndarray, activities: list[str], path: str | Path, title: str = ""
) -> Path:
    """The normalised confusion matrix (rows = true class) as a PNG (matplotlib, Agg backend)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    matrix = np.asarray(normalised, np.float64)
    figure, axes = plt.subplots(figsize=(1.2 * len(activities) + 2.5, 1.1 * len(activities) + 2))
    image = axes.imshow(matrix, cmap="Blues", vmin=0.0, vmax=1.0)
    axes.set_xticks(range(len(activities)), activities, rotation=30, ha="right")
    axes.set_yticks(range(len(activities)), activities)
    axes.set_xlabel("predicted")
    axes.set_ylabel("true")
    axes.set_title(title or "activity: normalised confusion matrix")
    for row in range(matrix.shape[0]):
        for col in range(matrix.shape[1]):
            colour = "white" if matrix[row, col] > 0.5 else "black"
            axes.text(col, row, f"{matrix[row, col]:.2f}", ha="center", va="center", color=colour)
    figure.colorbar(image, ax=axes, fraction=0.046)
    figure.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=100)
    plt.close(figure)
    return path


def activity_poses(
    data: str | Path | None = None,
    activities: tuple[str, ...] | None = None,
    splits: tuple[str, ...] = ("train", "val"),
    poses: str | Path | None = None,
) -> tuple[torch.Tensor, torch.Tensor, tuple[str, ...]]:
    """(features (N, 51), labels (N,), activities) from a poses file (``extract_poses``) or from the
    ``activity`` field of a COCO-format set's ``splits`` (ground-truth keypoints)."""
    from model.predictions import DEFAULT_ACTIVITIES
    from model.train.coco import CocoKeypoints
    from model.train.samples import ActivityPoseSet

    activities = tuple(activities or DEFAULT_ACTIVITIES)
    if poses is not None:
        dataset = ActivityPoseSet.from_poses_file(poses, activities)
        return dataset.features, dataset.labels, activities
    if data is None:
        raise ValueError("give a COCO-format folder with activity labels or a poses file")
    features, labels = [], []
    for split in splits:
        try:
            source = CocoKeypoints.from_root(data, split)
        except ValueError:
            continue
        dataset = ActivityPoseSet.from_coco(source, activities)
        features.append(dataset.features)
        labels.append(dataset.labels)
    if not features:
        raise ValueError(f"no split of {splits} under {data} has activity labels")
    return torch.cat(features), torch.cat(labels), activities


def activity_cv_report(
    features: np.ndarray,
    labels: np.ndarray,
    activities: tuple[str, ...] | list[str],
    config: ModelConfig,
    out: Path,
    folds: int = 5,
    seed: int = 0,
    epochs: int = 60,
) -> dict[str, Any]:
    """Cross-validation with the seed's activity hyper-parameters; confusion-matrix PNG into ``out``."""
    from model.train.config import ActivityHyper

    hyper = ActivityHyper()
    cv = cross_validate(
        features,
        labels,
        activities,
        folds=folds,
        seed=seed,
        epochs=epochs,
        batch_size=hyper.batch_size,
        config=config,
        lr=hyper.lr,
        plateau_factor=hyper.plateau_factor,
        plateau_patience=hyper.plateau_patience,
    )
    cv["confusion_png"] = str(
        plot_confusion(cv["confusion_normalised"], list(activities), Path(out) / "activity_confusion.png")
    )
    return cv


def evaluate_activity_on_predicted(
    pipeline_or_model: Any,
    data_dir: str | Path,
    split: str = "val",
    max_images: int | None = None,
    iou_threshold: float = 0.5,
    device: str | None = None,
) -> dict[str, Any]:
    """The activity classifier as it is used: on the *predicted* poses of held-out persons.

    The pipeline (a ``PosePipeline``, a ``MultiPoseNet`` or a checkpoint path) runs over the images of
    ``split``; each predicted person is matched one-to-one to a ground-truth person (box IoU ≥
    ``iou_threshold``, greedy by score: ``model.train.samples.match_persons``) and its predicted activity is
    scored against that person's label: accuracy, per-class precision/recall/F1, macro-F1, confusion (rows =
    truth). ``ground_truth_poses`` scores the same classifier on the same persons' ground-truth poses (the gap
    is what pose errors cost). Unmatched ground-truth persons are not scored; ``matched`` / ``truth_persons``
    says how many were."""
    from model.activity import encode_poses
    from model.train.coco import CocoKeypoints
    from model.train.samples import MatchCounts, as_pipeline, matched_predictions

    pipeline = as_pipeline(pipeline_or_model, device)
    activities = tuple(pipeline.activities)
    source = CocoKeypoints.from_root(data_dir, split, max_images=max_images)
    counts = MatchCounts()
    matched = list(matched_predictions(pipeline, source, iou_threshold, counts=counts))
    unknown = sorted({m.activity for m in matched} - set(activities))
    if unknown:
        raise ValueError(f"activity labels {unknown} are not among the model's activities {activities}")
    report: dict[str, Any] = {
        "data": str(data_dir),
        "split": split,
        "images": counts.images,
        "truth_persons": counts.truth_persons,
        "predicted_persons": counts.predicted_persons,
        "matched": counts.matched,
        "matched_fraction": counts.matched / max(counts.truth_persons, 1),
        "iou_threshold": iou_threshold,
        "activities": list(activities),
        "model_version": pipeline.model_version,
    }
    if not matched:
        log.warning("no predicted person matched a labelled one", data=str(data_dir), split=split)
        return report | {"accuracy": None, "macro_f1": None}
    truth = np.array([activities.index(m.activity) for m in matched])
    predicted = np.array([activities.index(m.prediction.activity) for m in matched])
    metrics = classification_metrics(truth, predicted, len(activities))
    classifier = pipeline.model.activity
    was_training = classifier.training
    classifier.eval()
    try:
        with torch.no_grad():
            parameter = next(classifier.parameters())
            keypoints = torch.from_numpy(np.stack([m.truth_keypoints for m in matched]).astype(np.float32))
            boxes = torch.from_numpy(np.stack([m.truth_box for m in matched]).astype(np.float32))
            features = encode_poses(keypoints, boxes).to(parameter.device, parameter.dtype)
            on_truth = classifier(features).argmax(1).cpu().numpy()
    finally:
        classifier.train(was_training)
    truth_metrics = classification_metrics(truth, on_truth, len(activities))
    confusion = metrics["confusion"]
    rows = confusion.sum(axis=1, keepdims=True)
    normalised = np.divide(confusion, rows, out=np.zeros(confusion.shape), where=rows > 0)
    log.info(
        "activity on predicted poses",
        split=split,
        matched=counts.matched,
        truth_persons=counts.truth_persons,
        accuracy=round(metrics["accuracy"], 4),
        macro_f1=round(metrics["macro_f1"], 4),
    )
    return report | {
        "accuracy": metrics["accuracy"],
        "macro_f1": metrics["macro_f1"],
        "macro_recall": metrics["macro_recall"],
        "per_class": {
            activity: {
                "precision": float(metrics["precision"][i]),
                "recall": float(metrics["recall"][i]),
                "f1": float(metrics["f1"][i]),
                "support": int(metrics["support"][i]),
            }
            for i, activity in enumerate(activities)
        },
        "confusion": confusion.tolist(),
        "confusion_normalised": normalised.round(4).tolist(),
        "ground_truth_poses": {
            "accuracy": truth_metrics["accuracy"],
            "macro_f1": truth_metrics["macro_f1"],
        },
    }
