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


def identified_real_annotations(count: int = 60, seed: int = 3) -> list[dict]:
    """``fake_real_annotations`` with COCO ids (spread out: the split must not depend on order)."""
    annotations = fake_real_annotations(count, seed)
    for index, annotation in enumerate(annotations):
        annotation["id"] = 1000 + 37 * index
    return annotations


def test_real_poses_split_by_id_deterministically_and_disjointly():
    from model.data.coco_sp import real_pose_part, split_real_annotations

    annotations = [{"id": i} for i in range(5000)]
    train, heldout = split_real_annotations(annotations)
    train_ids, heldout_ids = {a["id"] for a in train}, {a["id"] for a in heldout}
    assert not train_ids & heldout_ids and train_ids | heldout_ids == set(range(5000))
    assert 0.17 < len(heldout) / 5000 < 0.23  # ≈ 20 % held out
    # a function of the id alone: order and company do not matter
    shuffled = list(reversed(annotations[:300]))
    assert {a["id"] for a in split_real_annotations(shuffled)[1]} == {i for i in heldout_ids if i < 300}
    assert [real_pose_part(i) for i in range(50)] == [real_pose_part(i) for i in range(50)]
    assert split_real_annotations(annotations, heldout_fraction=0.0)[1] == []
    with pytest.raises(ValueError, match="'id'"):
        split_real_annotations([{"bbox": [0, 0, 1, 1]}])


def test_prn_training_samples_from_real_poses_come_from_the_train_part_only(tmp_path):
    from model.data.coco_sp import split_real_annotations
    from model.train.coco import CocoKeypoints
    from model.train.samples import PrnTrainingSet

    generate_dataset(tmp_path, 6, seed=5, val_fraction=0.3, size=(160, 160), max_people=3, progress=False)
    source = CocoKeypoints.from_root(tmp_path, "train")
    config = small_config()
    annotations = identified_real_annotations()
    train, heldout = split_real_annotations(annotations)
    assert len(heldout) >= 2 and len(train) >= 4
    synthetic_only = PrnTrainingSet(source, config)
    mixed = PrnTrainingSet(source, config, real_annotations=train, real_pose_fraction=0.5, seed=1)
    synthetic = len(synthetic_only)
    assert mixed.sources.count("synthetic") == synthetic
    assert mixed.sources.count("real") == synthetic  # f = 0.5: as many real as synthetic samples
    assert mixed.index[:synthetic] == synthetic_only.index
    real_ids = {
        mixed.people[i][n].annotation_id
        for (i, n), s in zip(mixed.index, mixed.sources, strict=True)
        if s == "real"
    }
    assert real_ids and real_ids <= {a["id"] for a in train}
    assert not real_ids & {a["id"] for a in heldout}
    for item in range(synthetic, len(mixed)):  # real scenes hold 2-4 people whose boxes overlap
        image, _ = mixed.index[item]
        assert 2 <= len(mixed.people[image]) <= 4
    x, y = mixed[len(mixed) - 1]
    assert x.shape == y.shape == (17, *config.prn_grid) and float(y.sum()) > 0
    quarter = PrnTrainingSet(source, config, real_annotations=train, real_pose_fraction=0.25, seed=1)
    assert quarter.sources.count("real") == round(synthetic / 3)
    with pytest.raises(ValueError, match="real pose annotations"):
        PrnTrainingSet(source, config, real_pose_fraction=0.5)
    with pytest.raises(ValueError, match="real_pose_fraction"):
        PrnTrainingSet(source, config, real_annotations=train, real_pose_fraction=1.0)


def test_real_pose_evaluation_scores_the_held_out_part_only(prn, monkeypatch):
    import model.data.coco_sp as coco_sp
    import model.evaluation.prn_eval as prn_eval

    annotations = identified_real_annotations()
    heldout_ids = {a["id"] for a in coco_sp.split_real_annotations(annotations)[1]}
    monkeypatch.setattr(coco_sp, "load_coco_sp_annotations", lambda cache=None: {"annotations": annotations})
    seen: list[set[int]] = []
    overlay = prn_eval.overlay_real_poses

    def recording_overlay(chosen, **kwargs):
        document = overlay(chosen, **kwargs)
        seen.append({a["source_id"] for a in document["annotations"]})
        return document

    monkeypatch.setattr(prn_eval, "overlay_real_poses", recording_overlay)
    summary = prn_eval.evaluate_prn_real_poses(prn, scenes=6, seed=0)
    assert summary["part"] == "heldout" and "held-out" in summary["source"]
    assert summary["real_poses"] == len(heldout_ids) and summary["images"] == 6
    assert seen[0] and seen[0] <= heldout_ids
    everything = prn_eval.evaluate_prn_real_poses(prn, scenes=6, seed=0, part="all")
    assert everything["real_poses"] == len(annotations) and not seen[1] <= heldout_ids
    with pytest.raises(ValueError, match="part"):
        prn_eval.evaluate_prn_real_poses(prn, part="test")


def test_a_mirrored_real_pose_swaps_sides_inside_its_box():
    from model.train.samples import mirrored_annotation

    annotation = identified_real_annotations(count=3)[2]  # two joints unlabelled
    mirrored = mirrored_annotation(annotation)
    before = np.asarray(annotation["keypoints"]).reshape(17, 3)
    after = np.asarray(mirrored["keypoints"]).reshape(17, 3)
    x, _, w, _ = annotation["bbox"]
    assert mirrored["id"] == annotation["id"] and mirrored["bbox"] == annotation["bbox"]
    # the left wrist lands where the right wrist was, reflected about the box's centre line
    assert after[9, 0] == pytest.approx(2 * x + w - before[10, 0]) and after[9, 1] == before[10, 1]
    assert after[0, 0] == pytest.approx(2 * x + w - before[0, 0])  # the nose stays on its own slot
    assert (after[:, 2] > 0).sum() == (before[:, 2] > 0).sum()
    assert np.allclose(np.asarray(mirrored_annotation(mirrored)["keypoints"]), annotation["keypoints"])
    assert annotation["keypoints"] == identified_real_annotations(count=3)[2]["keypoints"]  # not mutated
