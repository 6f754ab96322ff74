"""Activity cross-validation: folds partition the samples, metrics are right, a separable set is learnt."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from model_helpers import small_config

from model.evaluation.activity_cv import (
    classification_metrics,
    cross_validate,
    plot_confusion,
    stratified_folds,
)
from model.evaluation.report import results_markdown


@pytest.mark.parametrize(("samples", "classes", "folds"), [(100, 4, 5), (53, 3, 5), (7, 2, 3)])
def test_every_sample_is_in_exactly_one_validation_fold(samples, classes, folds):
    labels = np.arange(samples) % classes
    np.random.default_rng(0).shuffle(labels)
    parts = stratified_folds(labels, folds, seed=1)
    assert len(parts) == folds
    joined = np.concatenate(parts)
    assert sorted(joined.tolist()) == list(range(samples))  # a partition: no sample twice, none left out
    sizes = [len(p) for p in parts]
    assert max(sizes) - min(sizes) <= 1  # 1/folds each (20 % at 5 folds)
    for label in range(classes):  # stratified: each class spread evenly
        counts = [int((labels[p] == label).sum()) for p in parts]
        assert max(counts) - min(counts) <= 1
    assert [p.tolist() for p in parts] == [p.tolist() for p in stratified_folds(labels, folds, seed=1)]


def test_folds_reject_bad_arguments():
    with pytest.raises(ValueError, match="folds"):
        stratified_folds(np.zeros(10), folds=1)
    with pytest.raises(ValueError, match="cannot fill"):
        stratified_folds(np.zeros(3), folds=5)


def test_classification_metrics_match_a_hand_count():
    truth = np.array([0, 0, 0, 1, 1, 2])
    predicted = np.array([0, 0, 1, 1, 1, 1])
    metrics = classification_metrics(truth, predicted, 3)
    assert metrics["confusion"].tolist() == [[2, 1, 0], [0, 2, 0], [0, 1, 0]]
    assert metrics["precision"].tolist() == pytest.approx([1.0, 0.5, 0.0])
    assert metrics["recall"].tolist() == pytest.approx([2 / 3, 1.0, 0.0])
    assert metrics["f1"].tolist() == pytest.approx([0.8, 2 / 3, 0.0])
    assert metrics["class_accuracy"].tolist() == pytest.approx([5 / 6, 4 / 6, 5 / 6])
    assert metrics["accuracy"] == pytest.approx(4 / 6)
    assert metrics["macro_f1"] == pytest.approx((0.8 + 2 / 3) / 3)


def separable_poses(per_class: int = 40, classes: int = 4, seed: int = 0) -> tuple[torch.Tensor, ...]:
    """51-dim features whose class shows in a block of coordinates, plus noise."""
    rng = np.random.default_rng(seed)
    labels = np.repeat(np.arange(classes), per_class)
    features = rng.uniform(0.3, 0.7, (len(labels), 51)).astype(np.float32)
    for label in range(classes):
        features[labels == label, label * 8 : label * 8 + 8] += 0.3
    features[:, 34:] = 1.0  # every joint "found"
    return torch.from_numpy(features), torch.from_numpy(labels)


def test_cross_validation_learns_a_separable_set_and_reports_every_class(tmp_path):
    torch.set_num_threads(1)
    features, labels = separable_poses()
    activities = ("walking", "running", "sitting", "standing")
    result = cross_validate(features, labels, activities, folds=5, seed=0, epochs=12, config=small_config())
    assert result["folds"] == 5 and result["samples"] == 160
    assert result["macro"]["f1"]["mean"] > 0.9
    assert result["macro"]["accuracy"]["std"] >= 0.0
    assert set(result["per_class"]) == set(activities)
    assert sum(result["per_class"][a]["support"] for a in activities) == 160
    confusion = np.asarray(result["confusion"])
    assert confusion.sum() == 160  # every sample predicted exactly once over the folds
    assert np.asarray(result["confusion_normalised"]).sum(axis=1) == pytest.approx(np.ones(4), abs=1e-3)
    png = plot_confusion(result["confusion_normalised"], list(activities), tmp_path / "cm.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "**macro**" in results_markdown({"activity": result})


def test_cross_validation_of_shuffled_labels_is_near_chance():
    torch.set_num_threads(1)
    features, labels = separable_poses(per_class=30, seed=1)
    shuffled = labels[torch.from_numpy(np.random.default_rng(3).permutation(len(labels)))]
    activities = ("a", "b", "c", "d")
    result = cross_validate(features, shuffled, activities, folds=5, seed=0, epochs=8, config=small_config())
    assert result["macro"]["f1"]["mean"] < 0.55
