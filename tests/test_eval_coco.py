"""COCO scoring: a perfect prediction scores AP 1.0, a shuffled one far lower; the pipeline evaluation
and the report writers run end to end on a tiny set."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from model_helpers import TEMPLATE_POSE, force_detections, make_model, person_annotation, small_config

from model.evaluation.coco_eval import (
    box_result,
    evaluate_pipeline,
    evaluation_pipeline,
    keypoint_result,
    load_ground_truth,
    pose_score,
    score_results,
)
from model.evaluation.report import markdown_table, results_markdown, write_report
from model.pipeline import PosePipeline


@pytest.fixture(scope="module")
def synthetic_set(tmp_path_factory):
    from model.data.synth import generate_dataset

    root = tmp_path_factory.mktemp("eval-synth")
    generate_dataset(root, 8, seed=3, val_fraction=0.5, size=(128, 128), max_people=3, progress=False)
    return root


def hand_made_ground_truth(images: int = 4, people: int = 3, seed: int = 0) -> dict:
    """``people`` template poses per image, side by side (no overlap), randomly sized and jittered."""
    rng = np.random.default_rng(seed)
    document = {"images": [], "annotations": [], "categories": [{"id": 1, "name": "person"}]}
    for image_id in range(1, images + 1):
        document["images"].append({"id": image_id, "width": 200 * people, "height": 400})
        for person in range(people):
            w, h = rng.uniform(60, 120), rng.uniform(150, 300)
            x, y = 200 * person + rng.uniform(0, 60), rng.uniform(0, 80)
            points = TEMPLATE_POSE * [w, h] + [x, y] + rng.normal(0, 2, TEMPLATE_POSE.shape)
            keypoints = np.concatenate([points, np.full((17, 1), 2.0)], axis=1)
            next_id = len(document["annotations"]) + 1
            document["annotations"].append(person_annotation(next_id, image_id, [x, y, w, h], keypoints))
    return document


def results_from(document: dict, keypoint_source: list[int] | None = None) -> tuple[list, list]:
    """Keypoint and box results equal to the ground truth; ``keypoint_source[i]``: take annotation i's
    keypoints from annotation keypoint_source[i] instead (a shuffle)."""
    annotations = document["annotations"]
    keypoint_results, box_results = [], []
    for index, annotation in enumerate(annotations):
        source = annotations[keypoint_source[index]] if keypoint_source else annotation
        keypoints = np.asarray(source["keypoints"], np.float64).reshape(17, 3)
        keypoint_results.append(keypoint_result(annotation["image_id"], keypoints, 0.9))
        x, y, w, h = annotation["bbox"]
        box_results.append(box_result(annotation["image_id"], (x, y, x + w, y + h), 0.9))
    return keypoint_results, box_results


def test_perfect_prediction_scores_ap_one_for_keypoints_and_boxes():
    document = hand_made_ground_truth()
    gt = load_ground_truth(document)
    keypoint_results, box_results = results_from(document)
    keypoints = score_results(gt, keypoint_results, "keypoints")
    boxes = score_results(gt, box_results, "bbox")
    assert keypoints["AP"] == pytest.approx(1.0)
    assert keypoints["AR"] == pytest.approx(1.0)
    assert boxes["AP"] == pytest.approx(1.0)
    assert boxes["AR100"] == pytest.approx(1.0)


def test_shuffled_keypoints_score_far_lower_and_missing_results_score_zero():
    document = hand_made_ground_truth()
    gt = load_ground_truth(document)
    keypoint_results, _ = results_from(document)
    for result in keypoint_results:  # every joint placed where another joint of the same person is
        points = np.asarray(result["keypoints"]).reshape(17, 3)
        result["keypoints"] = np.roll(points, 6, axis=0).reshape(-1).tolist()
    assert score_results(gt, keypoint_results, "keypoints")["AP"] < 0.1
    # every pose moved to another image's person in the same slot
    count, people = len(document["annotations"]), 3
    moved, _ = results_from(document, [(index + people) % count for index in range(count)])
    assert score_results(gt, moved, "keypoints")["AP"] < 0.5
    # half the persons found: recall caps AP well below 1
    perfect, _ = results_from(document)
    half = score_results(gt, perfect[::2], "keypoints")
    assert 0.3 < half["AP"] < 0.7
    assert score_results(gt, [], "keypoints")["AP"] == 0.0
    with pytest.raises(ValueError, match="iou_type"):
        score_results(gt, perfect, "segm")


def test_jittered_keypoints_score_between_shuffled_and_perfect():
    document = hand_made_ground_truth(seed=1)
    gt = load_ground_truth(document)
    rng = np.random.default_rng(2)
    results, _ = results_from(document)
    for result in results:
        points = np.asarray(result["keypoints"]).reshape(17, 3)
        points[:, :2] += rng.normal(0, 6, (17, 2))
        result["keypoints"] = points.reshape(-1).tolist()
    ap = score_results(gt, results, "keypoints")["AP"]
    assert 0.2 < ap < 0.99


def test_pose_score_is_box_score_times_mean_found_joint_score():
    keypoints = np.zeros((17, 3), np.float32)
    assert pose_score(0.8, keypoints) == 0.0
    keypoints[:2, 2] = (0.5, 1.0)
    assert pose_score(0.8, keypoints) == pytest.approx(0.6)


def test_pipeline_evaluation_runs_on_a_tiny_synthetic_split(synthetic_set, tmp_path):
    torch.set_num_threads(1)
    pipeline = PosePipeline(make_model(small_config(input_size=(128, 128))), "test", "cpu")
    summary = evaluate_pipeline(
        pipeline, synthetic_set, "val", max_images=3, batch_size=2, results_dir=tmp_path
    )
    assert summary["images"] == 3
    assert summary["ground_truth_persons"] >= 3
    for stats in (summary["keypoints"], summary["bbox"]):
        assert all(-1.0 <= value <= 1.0 for value in stats.values())
    assert isinstance(json.loads((tmp_path / "bbox_results.json").read_text()), list)
    json_path, md_path = write_report({"meta": {"checkpoint": "none"}, "pipeline": summary}, tmp_path)
    assert json.loads(json_path.read_text())["pipeline"]["images"] == 3
    assert "keypoints (OKS)" in md_path.read_text()


def test_evaluation_sees_persons_below_the_display_threshold(synthetic_set):
    """The same weights: the display pipeline reports nobody at 0.4, the evaluation keeps the persons
    scored ≈ 0.2 (its default 0.05 threshold), up to ``eval_max_persons`` per image."""
    torch.set_num_threads(1)
    config = small_config(input_size=(128, 128), eval_max_persons=4)
    assert config.person_score_threshold == 0.4 and config.eval_score_threshold == 0.05
    model = force_detections(make_model(config), logit=-1.4)  # sigmoid(-1.4) ≈ 0.2 on every anchor
    pipeline = PosePipeline(model, "test", "cpu")
    frame = np.full((128, 128, 3), 127, np.uint8)
    assert pipeline.predict([frame]) == [[]]
    view = evaluation_pipeline(pipeline)
    persons = view.predict([frame])[0]
    assert 1 <= len(persons) <= 4 and all(0.05 <= p.score < 0.4 for p in persons)
    # the view shares the weights and leaves the display pipeline's config alone
    shared = view.model.backbone.body.conv1.weight, model.backbone.body.conv1.weight
    assert shared[0].data_ptr() == shared[1].data_ptr()
    assert model.config.person_score_threshold == 0.4 and pipeline.predict([frame]) == [[]]
    summary = evaluate_pipeline(pipeline, synthetic_set, "val", max_images=2, batch_size=2)
    assert summary["score_threshold"] == 0.05 and summary["max_persons"] == 4
    assert 2 <= summary["predicted_persons"] <= 8
    display = evaluate_pipeline(pipeline, synthetic_set, "val", max_images=2, score_threshold=0.4)
    assert display["predicted_persons"] == 0
    with pytest.raises(ValueError, match="max_persons"):
        evaluation_pipeline(pipeline, max_persons=0)


def test_markdown_table_formats_floats_and_missing_statistics():
    table = markdown_table(["a", "b", "c"], [["x|y", 0.12345, -1.0]])
    assert table.splitlines() == ["| a | b | c |", "|---|---|---|", "| x\\|y | 0.123 | – |"]
    assert results_markdown({}).startswith("# posestream evaluation")
