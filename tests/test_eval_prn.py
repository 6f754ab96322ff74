"""PRN alone on ground-truth peaks: runs on a handful of synthetic images, is exact on single-person boxes,
and real poses are overlaid with overlapping boxes."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from model_helpers import TEMPLATE_POSE, make_model, small_config

from model.data.synth import generate_dataset
from model.evaluation.coco_eval import load_ground_truth
from model.evaluation.prn_eval import (
    MIN_OVERLAY_JOINTS,
    evaluate_prn_on_ground_truth,
    evaluate_prn_split,
    ground_truth_detections,
    overlay_real_poses,
)


@pytest.fixture(scope="module")
def prn():
    torch.set_num_threads(1)
    return make_model(small_config()).prn


def test_single_person_images_are_exact_for_the_baseline_and_the_untrained_network(prn, tmp_path):
    generate_dataset(tmp_path, 6, seed=5, val_fraction=0.5, size=(160, 160), max_people=1, progress=False)
    summary = evaluate_prn_split(prn, tmp_path, "val")
    assert summary["images"] >= 2 and summary["multi_person_images"] == 0
    # one candidate per joint: whoever assigns, the pose is the ground truth
    assert summary["baseline"]["AP"] == pytest.approx(1.0)
    assert summary["network"]["AP"] == pytest.approx(1.0)


def test_prn_evaluation_runs_on_a_few_crowded_synthetic_images(prn, tmp_path):
    generate_dataset(tmp_path, 6, seed=7, val_fraction=0.5, size=(160, 160), max_people=5, progress=False)
    summary = evaluate_prn_split(prn, tmp_path, "val", max_images=3)
    assert summary["images"] == 3 and summary["persons"] >= 3
    for method in ("network", "baseline"):
        assert 0.0 <= summary[method]["AP"] <= 1.0
    assert not prn.training


def test_ground_truth_detections_hold_every_labelled_joint_as_a_peak():
    keypoints = np.zeros((17, 3))
    keypoints[:, :2] = TEMPLATE_POSE * 100
    keypoints[:10, 2] = 2  # joints 10.. unlabelled
    annotations = [
        {"keypoints": keypoints.reshape(-1).tolist(), "bbox": [0, 0, 100, 100]},
        {"keypoints": (keypoints + [50, 0, 0]).reshape(-1).tolist(), "bbox": [50, 0, 100, 100]},
    ]
    detections = ground_truth_detections(annotations, 200, 120)
    assert detections.peaks.shape == (17, 2, 3)
    assert detections.boxes.tolist() == [[0, 0, 100, 100], [50, 0, 150, 100]]
    assert (detections.peaks[:10, :, 2] == 1).all() and (detections.peaks[10:] == 0).all()
    assert detections.peaks[0, 1, 0] == pytest.approx(keypoints[0, 0] + 50)


def fake_real_annotations(count: int = 12, seed: int = 0) -> list[dict]:
    """Crops in the wheel's format: bbox [0, 0, w, h], keypoints in crop pixels, v = 0 as junk."""
    rng = np.random.default_rng(seed)
    annotations = []
    for index in range(count):
        w, h = rng.uniform(80, 200), rng.uniform(200, 400)
        points = np.concatenate([TEMPLATE_POSE * [w, h], np.full((17, 1), 2.0)], axis=1)
        points[rng.choice(17, size=index % 4, replace=False)] = (-73, -206, 0)
        keypoints = points.reshape(-1).tolist()
        annotations.append({"bbox": [0, 0, w, h], "area": 0.5 * w * h, "keypoints": keypoints})
    annotations.append({"bbox": [0, 0, 90, 90], "area": 10.0, "keypoints": [0.0] * 51})  # too few joints
    return annotations


def test_real_poses_are_overlaid_with_overlapping_boxes_and_scaled_areas():
    annotations = fake_real_annotations()
    document = overlay_real_poses(annotations, scenes=20, seed=1)
    assert document == overlay_real_poses(annotations, scenes=20, seed=1)  # deterministic for a seed
    by_image: dict[int, list[dict]] = {}
    for annotation in document["annotations"]:
        by_image.setdefault(annotation["image_id"], []).append(annotation)
        points = np.asarray(annotation["keypoints"]).reshape(17, 3)
        labelled = points[:, 2] > 0
        x, y, w, h = annotation["bbox"]
        assert labelled.sum() >= MIN_OVERLAY_JOINTS
        assert (points[labelled, 0] >= x - 1e-6).all() and (points[labelled, 0] <= x + w + 1e-6).all()
        assert (points[labelled, 1] >= y - 1e-6).all() and (points[labelled, 1] <= y + h + 1e-6).all()
        assert (points[~labelled] == 0).all()
        assert annotation["area"] == pytest.approx(0.5 * w * h, rel=1e-6)
    images = {image["id"]: image for image in document["images"]}
    assert len(by_image) == 20
    for image_id, people in by_image.items():
        assert 2 <= len(people) <= 4
        for left, right in zip(people, people[1:], strict=False):  # neighbours overlap horizontally
            assert right["bbox"][0] < left["bbox"][0] + left["bbox"][2]
        assert all(p["bbox"][0] + p["bbox"][2] <= images[image_id]["width"] for p in people)


def test_overlaid_real_poses_separate_the_baseline_from_perfect(prn):
    gt = load_ground_truth(overlay_real_poses(fake_real_annotations(), scenes=15, seed=2))
    summary = evaluate_prn_on_ground_truth(prn, gt)
    assert summary["multi_person_images"] == 15
    # overlapping boxes hold other people's joints: the nearest-peak guess is no longer always right
    assert summary["baseline"]["AP"] < 0.99
    assert 0.0 <= summary["network"]["AP"] <= 1.0
