"""Training-run diagnostics: ground-truth heatmaps give ~0 joint error and no left/right confusion,
swapped channels give high confusion, merged channels correlate; the pipeline path runs on a tiny model."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from model_helpers import TEMPLATE_POSE, make_model, person_annotation, small_config

from model.decode import render_keypoint_targets
from model.evaluation.coco_eval import load_ground_truth
from model.evaluation.diagnostics import (
    JOINT_GROUPS,
    diagnose_heatmaps,
    left_right_correlations,
    nearest_peak_distances,
    pipeline_diagnostics,
)
from model.pipeline import PosePipeline
from model.predictions import FLIP_PAIRS
from model.preprocess import compute_letterbox, letterbox_points

CANVAS = (256, 256)


def ground_truth(images: int = 3, people: int = 2, seed: int = 0) -> dict:
    """``people`` template poses side by side on 480×320 images (letterboxed onto 256×256: scale 0.53),
    every joint labelled except one (v = 0) per person, the right ankle as hidden (v = 1) where labelled."""
    rng = np.random.default_rng(seed)
    document = {"images": [], "annotations": [], "categories": [{"id": 1, "name": "person"}]}
    for image_id in range(1, images + 1):
        document["images"].append({"id": image_id, "width": 480, "height": 320, "file_name": "x.jpg"})
        for person in range(people):
            w, h = rng.uniform(140, 180), rng.uniform(220, 280)
            x, y = 240 * person + rng.uniform(10, 50), rng.uniform(5, 30)
            points = TEMPLATE_POSE * [w, h] + [x, y] + rng.uniform(-1.5, 1.5, TEMPLATE_POSE.shape)
            keypoints = np.concatenate([points, np.full((17, 1), 2.0)], axis=1)
            keypoints[16, 2] = 1.0
            keypoints[int(rng.integers(17))] = 0.0
            next_id = len(document["annotations"]) + 1
            document["annotations"].append(person_annotation(next_id, image_id, [x, y, w, h], keypoints))
    return document


def rendered_heatmaps(document: dict, sigma: float = 2.0) -> tuple[torch.Tensor, list]:
    """Ground-truth heatmaps (B, 18, 64, 64) of the letterboxed canvases, and their letterboxes."""
    maps, boxes = [], []
    for image in document["images"]:
        box = compute_letterbox(image["height"], image["width"], CANVAS)
        people = [a for a in document["annotations"] if a["image_id"] == image["id"]]
        keypoints = np.stack([np.asarray(a["keypoints"], np.float32).reshape(17, 3) for a in people])
        keypoints[..., :2] = letterbox_points(keypoints[..., :2], box)
        maps.append(render_keypoint_targets(torch.from_numpy(keypoints), (64, 64), sigma))
        boxes.append(box)
    return torch.stack(maps), boxes


@pytest.fixture(scope="module")
def document_and_maps():
    document = ground_truth()
    return document, load_ground_truth(document), *rendered_heatmaps(document)


def baseline_assign(config):
    prn = make_model(config).prn
    return lambda detections: prn.assign(detections, use_network=False)


def test_ground_truth_heatmaps_diagnose_as_perfect(document_and_maps):
    document, gt, maps, boxes = document_and_maps
    config = small_config(input_size=CANVAS)
    ids = [image["id"] for image in document["images"]]
    result = diagnose_heatmaps(maps, boxes, gt, ids, config, baseline_assign(config), "baseline")
    assert result.images == 3 and result.persons == 6
    assert result.joint_error.joints == 6 * 16  # every labelled joint, the unlabelled one left out
    assert result.joint_error.found == 1.0
    assert result.joint_error.median_px < 0.05  # image px (DARK decodes rendered Gaussians exactly)
    assert result.joint_error.within_px["2px"] == 1.0
    assert set(result.joint_error_by_group) == set(JOINT_GROUPS)
    assert sum(g.joints for g in result.joint_error_by_group.values()) == result.joint_error.joints
    flags = [v for a in document["annotations"] for v in a["keypoints"][2::3]]
    assert result.joint_error_by_visibility["seen"].joints == flags.count(2)
    assert result.joint_error_by_visibility["hidden"].joints == flags.count(1) > 0
    # only the close pairs (eyes, ears: ≈ 2 heatmap px apart) overlap; limbs' Gaussians barely do
    assert result.left_right.correlation < 0.4
    assert result.left_right.correlation_by_pair["shoulder"] < 0.2
    assert result.left_right.closer_opposite == 0.0
    assert result.left_right.lateral_joints == result.joint_error.joints - sum(
        1 for a in document["annotations"] if a["keypoints"][2] > 0
    )
    assert result.gt_box_keypoints["AP"] > 0.9 and result.gt_box_assignment == "baseline"
    plain = json.loads(json.dumps(result.as_dict()))
    assert plain["keypoint_ap_gt_boxes"] == result.gt_box_keypoints["AP"]
    assert plain["median_joint_error_px"] == result.joint_error.median_px
    assert plain["left_right_correlation"] == result.left_right.correlation
    assert (
        plain["joint_error"]["within_px"]["8px"] == 1.0
        and "shoulder" in plain["left_right"]["correlation_by_pair"]
    )


def test_swapped_and_merged_left_right_channels_are_flagged(document_and_maps):
    document, gt, maps, boxes = document_and_maps
    config = small_config(input_size=CANVAS)
    ids = [image["id"] for image in document["images"]]
    order = list(range(18))
    for left, right in FLIP_PAIRS:
        order[left], order[right] = right, left
    swapped = diagnose_heatmaps(maps[:, order], boxes, gt, ids, config)
    assert swapped.left_right.closer_opposite > 0.9
    assert swapped.joint_error_by_group["head"].median_px > 2.0  # eyes/ears land on their mirror
    assert swapped.joint_error.median_px > 5.0
    assert swapped.gt_box_keypoints is None  # no assigner given
    merged = maps.clone()
    for left, right in FLIP_PAIRS:  # both channels fire on both sides: cannot tell left from right
        merged[:, left] = merged[:, right] = torch.maximum(maps[:, left], maps[:, right])
    confused = diagnose_heatmaps(merged, boxes, gt, ids, config)
    assert confused.left_right.correlation > 0.99
    # the same peaks in both channels: every lateral joint a tie, chance level
    assert confused.left_right.closer_opposite == pytest.approx(0.5)
    assert confused.joint_error_by_group["shoulders"].within_px["2px"] == 1.0


def test_nearest_peak_distances_and_correlations_on_hand_made_input():
    peaks = np.zeros((17, 2, 3), np.float32)
    peaks[5, 0] = (10, 10, 0.9)  # left shoulder channel: one peak
    peaks[6, :] = ((20, 10, 0.8), (11, 10, 0.5))  # right shoulder channel: two
    keypoints = np.zeros((1, 17, 3), np.float32)
    keypoints[0, 5] = (10, 13, 2)
    keypoints[0, 6] = (20, 10, 2)
    own, opposite = nearest_peak_distances(peaks, keypoints)
    assert own[0, 5] == pytest.approx(3.0) and opposite[0, 5] == pytest.approx(np.hypot(1, 3))
    assert own[0, 6] == pytest.approx(0.0) and opposite[0, 6] == pytest.approx(10.0)
    assert np.isinf(own[0, 0])  # no nose peak
    maps = torch.rand(2, 17, 8, 8)
    maps[:, 2] = maps[:, 1] * 2 + 1  # eyes: perfectly correlated
    maps[:, 4] = -maps[:, 3]  # ears: anti-correlated
    maps[:, 6] = 0.5  # a flat right shoulder: undefined
    r = left_right_correlations(maps)
    assert r.shape == (2, len(FLIP_PAIRS))
    assert np.allclose(r[:, 0], 1.0, atol=1e-5) and np.allclose(r[:, 1], -1.0, atol=1e-5)
    assert np.isnan(r[:, 2]).all()
    with pytest.raises(ValueError, match="peaks"):
        nearest_peak_distances(peaks[:5], keypoints)


def test_pipeline_diagnostics_run_on_a_tiny_untrained_model(tmp_path):
    from model.data.synth import generate_dataset

    torch.set_num_threads(1)
    data = tmp_path / "data"
    generate_dataset(data, 6, seed=5, val_fraction=0.5, size=(96, 96), max_people=3, progress=False)
    pipeline = PosePipeline(make_model(small_config(peak_threshold=0.0)), "test", "cpu")
    result = pipeline_diagnostics(pipeline, data, "val", max_images=2, batch_size=2)
    assert result.images == 2 and result.persons >= 2
    assert result.joint_error.joints > 0 and 0.0 <= result.joint_error.within_px["8px"] <= 1.0
    assert result.gt_box_assignment == "baseline"  # an untrained PRN: the pipeline's own fallback
    assert 0.0 <= result.gt_box_keypoints["AP"] <= 1.0
    assert result.left_right.correlation is None or -1.0 <= result.left_right.correlation <= 1.0
    json.dumps(result.as_dict())
    with pytest.raises(ValueError, match="batch_size"):
        pipeline_diagnostics(pipeline, data, "val", batch_size=0)
