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


def test_persons_are_matched_one_to_one_greedily_by_score():
    from model.train.samples import box_iou, match_persons

    truth = np.array([[0, 0, 10, 10], [4, 0, 14, 10]], np.float32)  # G0, G1
    b = [1, 0, 11, 10]  # the best fit of G0, and the only candidate for G1
    c = [0, 0, 10, 10]  # G0 exactly, but a lower score than a
    a = [-3, 0, 9, 10]  # G0 only, highest score
    predicted = np.array([b, c, a], np.float32)
    iou = box_iou(predicted, truth)
    assert iou[0] == pytest.approx([90 / 110, 70 / 130])
    assert iou[2, 0] == pytest.approx(90 / 130) and iou[2, 1] < 0.5
    assert iou[1, 1] < 0.5
    scores = np.array([0.5, 0.7, 0.9])
    # a (0.9) takes G0 although b and c fit it better; c (0.7) finds G0 taken and G1 too far; b takes G1.
    # By IoU first, b would take G0 and a nothing; per prediction without uniqueness, all three would take G0.
    assert match_persons(predicted, scores, truth).tolist() == [1, -1, 0]
    assert match_persons(predicted, scores, truth, iou_threshold=0.6).tolist() == [-1, -1, 0]
    assert match_persons(predicted, np.array([0.9, 0.7, 0.5]), truth).tolist() == [0, -1, -1]
    assert match_persons(np.zeros((0, 4)), np.zeros(0), truth).tolist() == []
    assert match_persons(predicted, scores, np.zeros((0, 4))).tolist() == [-1, -1, -1]


class ScriptedPipeline:
    """Stands in for ``PosePipeline``: for each image of ``source``, predictions made from its ground truth —
    per person, first a low-score duplicate with a wrong label, then the person itself (the right label unless
    its annotation id is in ``wrong``), and a confident false positive where nobody stands."""

    model_version = "scripted"

    def __init__(self, source, model, wrong: set[int]) -> None:
        import hashlib

        from model.predictions import PersonPrediction

        self.model = model
        self.activities = model.activities
        self.by_image: dict[str, list] = {}
        self.calls = 0

        def other(activity: str) -> str:
            return next(a for a in self.activities if a != activity)

        for index in range(len(source)):
            predictions = [
                PersonPrediction((0.0, 0.0, 3.0, 3.0), 0.99, np.zeros((17, 3), np.float32), "walking")
            ]
            for person in source.people(index):
                if person.iscrowd or person.activity is None:
                    continue
                box = tuple(float(v) for v in person.box)
                keypoints = person.keypoints.copy()
                moved = (box[0] + 2, box[1] + 1, box[2] - 1, box[3] + 2)
                predictions.append(PersonPrediction(box, 0.3, keypoints, other(person.activity)))
                label = other(person.activity) if person.annotation_id in wrong else person.activity
                predictions.append(PersonPrediction(moved, 0.9, keypoints, label))
            self.by_image[hashlib.sha1(source.load_image(index).tobytes()).hexdigest()] = predictions

    def predict(self, images):
        import hashlib

        self.calls += 1
        return [self.by_image[hashlib.sha1(image.tobytes()).hexdigest()] for image in images]


@pytest.fixture(scope="module")
def labelled_set(tmp_path_factory):
    from model.data.synth import generate_dataset

    out = tmp_path_factory.mktemp("activity_synth")
    generate_dataset(out, 8, seed=4, val_fraction=0.5, size=(160, 160), max_people=4, progress=False)
    return out


def test_activity_is_scored_on_the_predicted_poses_of_matched_held_out_persons(labelled_set):
    from model_helpers import make_model

    from model.evaluation.activity_cv import evaluate_activity_on_predicted
    from model.train.coco import CocoKeypoints

    source = CocoKeypoints.from_root(labelled_set, "val")
    people = [p for i in range(len(source)) for p in source.people(i) if p.activity is not None]
    assert len(people) >= 4
    wrong = {people[0].annotation_id, people[1].annotation_id}
    pipeline = ScriptedPipeline(source, make_model(small_config()), wrong)
    report = evaluate_activity_on_predicted(pipeline, labelled_set, "val")
    assert report["truth_persons"] == len(people) and report["matched"] == len(people)
    assert report["predicted_persons"] == len(people) * 2 + len(source)
    assert report["accuracy"] == pytest.approx(1 - 2 / len(people))
    assert np.asarray(report["confusion"]).sum() == len(people)
    assert sum(c["support"] for c in report["per_class"].values()) == len(people)
    assert 0.0 <= report["macro_f1"] <= 1.0 and 0.0 <= report["ground_truth_poses"]["accuracy"] <= 1.0
    few = evaluate_activity_on_predicted(pipeline, labelled_set, "val", max_images=1)
    assert few["images"] == 1 and few["matched"] == few["truth_persons"] < len(people)


def test_predicted_poses_of_labelled_images_become_a_poses_file(labelled_set, tmp_path):
    import json

    from model_helpers import make_model

    from model.train.coco import CocoKeypoints
    from model.train.samples import ActivityPoseSet, extract_activity_poses

    source = CocoKeypoints.from_root(labelled_set, "train")
    people = {p.annotation_id: p for i in range(len(source)) for p in source.people(i) if p.activity}
    pipeline = ScriptedPipeline(source, make_model(small_config()), wrong=set())
    path = extract_activity_poses(pipeline, labelled_set, "train", tmp_path / "poses.json")
    document = json.loads(path.read_text())
    poses = document["poses"]
    assert document["summary"]["poses"] == len(poses) == len(people)  # one per person, duplicates dropped
    assert sorted(p["annotation_id"] for p in poses) == sorted(people)
    for pose in poses:
        truth = people[pose["annotation_id"]]
        assert pose["activity"] == truth.activity and pose["source"] == "predicted"
        assert pose["score"] == pytest.approx(0.9) and pose["iou"] >= 0.5
        assert pose["bbox"][0] == pytest.approx(float(truth.box[0]) + 2)  # the predicted box, not the truth
    dataset = ActivityPoseSet.from_poses_file(path, pipeline.activities)
    assert len(dataset) == len(poses) and set(dataset.sources) == {"predicted"}
    assert {g.split("/")[0] for g in dataset.groups} == {"train"}
