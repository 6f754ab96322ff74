"""The activity study (issue 22): features, temporal windows, shared folds, report files, and classifiers
that can fail."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from model_helpers import TEMPLATE_POSE

from model.data.skeleton import COCO_SKELETON, DEFAULT_ACTIVITIES, KEYPOINT_INDEX
from model.evaluation.activity_cv import stratified_folds
from model.evaluation.activity_features import (
    keypoint_features,
    keypoint_limb_features,
    limb_features,
    torso_length,
    window_features,
    window_width,
)
from model.evaluation.activity_samples import (
    SEQUENCE,
    STILL,
    SequenceRecipe,
    generated_still_samples,
    sequence_samples,
    track_windows,
)
from model.evaluation.activity_study import (
    SEED,
    STUDY_VARIANTS,
    TEMPORAL,
    StudySettings,
    grouped_folds,
    run_study,
    score_variant,
)
from model.evaluation.activity_study_report import folds_digest, write_study

LEFT_FOREARM = COCO_SKELETON.index((KEYPOINT_INDEX["left_elbow"], KEYPOINT_INDEX["left_wrist"]))
LIMBS = len(COCO_SKELETON)


def posed_people(count: int = 4, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """keypoints (N, 17, 3) around the template pose in 100×200 px boxes (a few joints not found)."""
    rng = np.random.default_rng(seed)
    keypoints = np.zeros((count, 17, 3), np.float32)
    boxes = np.zeros((count, 4), np.float32)
    for i in range(count):
        origin = rng.uniform(0, 300, 2)
        keypoints[i, :, :2] = origin + (TEMPLATE_POSE + rng.normal(0, 0.03, TEMPLATE_POSE.shape)) * (100, 200)
        keypoints[i, :, 2] = 2
        keypoints[i, rng.choice(17, 2, replace=False)] = 0  # not found: (0, 0, 0) as in COCO
        boxes[i] = (*origin, *(origin + (100, 200)))
    return torch.from_numpy(keypoints), torch.from_numpy(boxes)


def moved(keypoints: torch.Tensor, boxes: torch.Tensor, scale: float, shift: tuple[float, float]):
    offset = torch.tensor(shift)
    found = keypoints[..., 2:] > 0
    points = torch.where(found, keypoints[..., :2] * scale + offset, keypoints[..., :2])
    return torch.cat([points, keypoints[..., 2:]], dim=-1), boxes * scale + offset.repeat(2)


def test_features_have_their_widths_and_ignore_where_and_how_big_the_person_is():
    keypoints, boxes = posed_people()
    assert keypoint_features(keypoints, boxes).shape == (4, 51)
    assert limb_features(keypoints, boxes).shape == (4, 3 * LIMBS)
    assert keypoint_limb_features(keypoints, boxes).shape == (4, 51 + 3 * LIMBS)
    windows_kp = torch.stack([keypoints, keypoints.roll(1, 0), keypoints.roll(2, 0)], dim=1)  # (4, 3, 17, 3)
    windows_box = torch.stack([boxes + 5, boxes + 10, boxes], dim=1)
    assert window_features(windows_kp, windows_box).shape == (4, window_width(3)) == (4, 3 * 51 + 2 * 3)
    for scale, shift in ((2.5, (-40.0, 130.0)), (0.3, (7.0, -3.0))):
        other_kp, other_box = moved(keypoints, boxes, scale, shift)
        torch.testing.assert_close(
            keypoint_limb_features(other_kp, other_box),
            keypoint_limb_features(keypoints, boxes),
            atol=1e-5,
            rtol=0,
        )
        other_wkp, other_wbox = moved(windows_kp, windows_box, scale, shift)
        torch.testing.assert_close(
            window_features(other_wkp, other_wbox),
            window_features(windows_kp, windows_box),
            atol=1e-5,
            rtol=0,
        )
    # the box motion is in the features: the same poses in a box that moved are another input
    still = torch.stack([boxes, boxes, boxes], dim=1)
    assert not torch.allclose(window_features(windows_kp, still), window_features(windows_kp, windows_box))
    with pytest.raises(ValueError, match="17, 3"):
        limb_features(keypoints[:, :10], boxes)


def test_limb_angle_follows_a_rotated_forearm_and_nothing_else():
    keypoints, boxes = posed_people(1)
    keypoints[0, :, 2] = 2  # every joint found
    elbow, wrist = KEYPOINT_INDEX["left_elbow"], KEYPOINT_INDEX["left_wrist"]
    before = limb_features(keypoints, boxes)[0].reshape(3, LIMBS)  # rows: sin, cos, length ratio
    bone = keypoints[0, wrist, :2] - keypoints[0, elbow, :2]
    turned = keypoints.clone()
    turned[0, wrist, :2] = keypoints[0, elbow, :2] + torch.stack([-bone[1], bone[0]])  # 90° about the elbow
    after = limb_features(turned, boxes)[0].reshape(3, LIMBS)
    angle_before = math.atan2(float(before[0, LEFT_FOREARM]), float(before[1, LEFT_FOREARM]))
    angle_after = math.atan2(float(after[0, LEFT_FOREARM]), float(after[1, LEFT_FOREARM]))
    assert (angle_after - angle_before) % (2 * math.pi) == pytest.approx(math.pi / 2, abs=1e-4)
    others = [i for i in range(LIMBS) if i != LEFT_FOREARM]
    torch.testing.assert_close(after[:2, others], before[:2, others])
    torch.testing.assert_close(after[2], before[2])  # a rotation keeps every length
    expected_ratio = float(bone.norm() / torso_length(keypoints, boxes)[0])
    assert float(after[2, LEFT_FOREARM]) == pytest.approx(expected_ratio, rel=1e-5)
    hidden = keypoints.clone()
    hidden[0, wrist] = 0  # the wrist not found: the forearm gives zeros
    assert limb_features(hidden, boxes)[0].reshape(3, LIMBS)[:, LEFT_FOREARM].abs().sum() == 0


def test_torso_length_falls_back_to_the_box_height_without_hips():
    keypoints, boxes = posed_people(2)
    keypoints[:, 5:7, 2] = 2  # shoulders found
    keypoints[:, 11:13, 2] = 2
    shoulders, hips = keypoints[:, 5:7, :2].mean(1), keypoints[:, 11:13, :2].mean(1)
    torch.testing.assert_close(torso_length(keypoints, boxes), (shoulders - hips).norm(dim=1))
    keypoints[1, 11:13] = 0
    assert float(torso_length(keypoints, boxes)[1]) == pytest.approx(200.0)


def ground_truth_frames() -> list[dict]:
    """Two tracks over 9 frames; a joint's x encodes (track, frame); track 2 is missing in frame 4."""
    frames = []
    for index in range(9):
        people = []
        for track in (1, 2):
            if track == 2 and index == 4:
                continue
            keypoints = [[100 * track + index, 10.0 + j, 2] for j in range(17)]
            activity = "walking" if index < 6 else "standing"
            people.append(
                {"track_id": track, "activity": activity, "keypoints": keypoints, "bbox": [0, 0, 50, 60]}
            )
        frames.append({"frame_index": index, "people": people[::-1]})  # order in a frame means nothing
    return frames


def test_a_window_holds_one_track_at_earlier_frames_and_the_label_of_the_last():
    windows = track_windows(
        ground_truth_frames(), window=3, step=2, sample_every=1, activities=DEFAULT_ACTIVITIES
    )
    assert windows is not None and windows.kind == SEQUENCE and windows.window == 3
    seen = set()
    for sample in range(len(windows)):
        track, frames = int(windows.track_ids[sample]), windows.frame_indices[sample].tolist()
        last = frames[-1]
        assert frames == [last - 4, last - 2, last]  # earlier frames only, oldest first
        assert windows.keypoints[sample, :, 0, 0].tolist() == [
            100 * track + f for f in frames
        ]  # the same track
        assert windows.activities[windows.labels[sample]] == ("walking" if last < 6 else "standing")
        seen.add((track, last))
    # frames 0-3 have no two earlier frames; track 2's windows through frame 4 are dropped
    assert seen == {(1, 4), (1, 5), (1, 6), (1, 7), (1, 8), (2, 5), (2, 7)}
    np.testing.assert_allclose(windows.boxes[0, 0], [0, 0, 50, 60])  # COCO x, y, w, h → x1, y1, x2, y2
    every_other = track_windows(ground_truth_frames(), 3, 2, sample_every=2, activities=DEFAULT_ACTIVITIES)
    assert set(every_other.frame_indices[:, -1].tolist()) == {4, 6, 8}
    assert track_windows(ground_truth_frames(), 6, 2, 1, DEFAULT_ACTIVITIES) is None  # no 11 frames


def test_windows_of_a_rendered_sequence_match_its_ground_truth():
    from model.data.sequence import iter_sequence_frames

    recipe = SequenceRecipe(sequences=1, frames=14, people=2, size=(128, 128), sample_every=3)
    windows = sequence_samples(recipe, window=3, step=2, seed=5)
    truth = {f["frame_index"]: f for _, f in iter_sequence_frames(14, 2, 5 * 1000, size=(128, 128))}
    assert len(windows) > 0 and set(windows.groups.tolist()) == {0}
    for sample in range(len(windows)):
        for position, frame in enumerate(windows.frame_indices[sample]):
            person = next(
                p for p in truth[int(frame)]["people"] if p["track_id"] == windows.track_ids[sample]
            )
            np.testing.assert_allclose(windows.keypoints[sample, position], person["keypoints"], atol=1e-4)


def test_grouped_folds_partition_the_samples_and_keep_each_group_together():
    rng = np.random.default_rng(0)
    groups = np.repeat(np.arange(12), rng.integers(5, 30, 12))
    labels = rng.integers(0, 4, len(groups))
    parts = grouped_folds(labels, groups, folds=4, seed=1)
    assert sorted(np.concatenate(parts).tolist()) == list(range(len(labels)))
    assert all(len(set(groups[p])) >= 1 for p in parts)
    for group in np.unique(groups):
        assert sum(bool(np.isin(np.flatnonzero(groups == group), p).any()) for p in parts) == 1
    assert [p.tolist() for p in parts] == [p.tolist() for p in grouped_folds(labels, groups, 4, seed=1)]
    with pytest.raises(ValueError, match="groups"):
        grouped_folds(labels, groups, folds=13)


@pytest.fixture(scope="module")
def tiny_study():
    torch.set_num_threads(1)
    still = generated_still_samples(12, seed=3, size=(128, 128), max_people=6)
    recipe = SequenceRecipe(sequences=3, frames=30, people=3, size=(128, 128), sample_every=2)
    samples = {STILL: still, SEQUENCE: sequence_samples(recipe, TEMPORAL.window, TEMPORAL.window_step, 0)}
    settings = StudySettings.seed_hyper(folds=3, epochs=1, seed=0)
    return samples, settings, run_study(samples, settings)


def test_every_variant_of_a_sample_set_is_scored_on_the_same_folds(tiny_study):
    samples, settings, results = tiny_study
    assert [r.variant.name for r in results] == [v.name for v in STUDY_VARIANTS]
    assert len(STUDY_VARIANTS) == 7 and {v.samples for v in STUDY_VARIANTS} == {STILL, SEQUENCE}
    for kind in (STILL, SEQUENCE):
        folds = [r.fold_indices for r in results if r.variant.samples == kind]
        assert len(folds) >= 2
        for other in folds[1:]:
            assert [f.tolist() for f in other] == [f.tolist() for f in folds[0]]
        assert all(r.cv["samples"] == len(samples[kind]) for r in results if r.variant.samples == kind)
    still_folds = next(r.fold_indices for r in results if r.variant.samples == STILL)
    expected = stratified_folds(samples[STILL].labels, 3, 0)
    assert [f.tolist() for f in still_folds] == [f.tolist() for f in expected]


def test_the_report_has_every_variant_with_mean_and_spread(tiny_study, tmp_path):
    samples, settings, results = tiny_study
    files = write_study(results, samples, settings, tmp_path, command="posestream eval activity --study")
    document = json.loads(files.json_path.read_text())
    assert [v["name"] for v in document["variants"]] == [v.name for v in STUDY_VARIANTS]
    for entry in document["variants"]:
        for metric in ("precision", "recall", "f1", "accuracy"):
            spread = entry["macro"][metric]
            assert 0 <= spread["mean"] <= 1 and spread["std"] >= 0
        assert len(entry["per_fold"]) == 3
    digests = {v["sample_set"]: set() for v in document["variants"]}
    for entry in document["variants"]:
        digests[entry["sample_set"]].add(entry["folds_digest"])
    assert all(len(d) == 1 for d in digests.values()) and digests[STILL] != digests[SEQUENCE]
    temporal = next(v for v in document["variants"] if v["name"] == "temporal")
    assert (
        temporal["f1_gain"]["compared_with"] == "seed_sequence" and len(temporal["f1_gain"]["per_fold"]) == 3
    )
    assert document["best"][STILL] in {v.name for v in STUDY_VARIANTS if v.samples == STILL}
    markdown = files.markdown_path.read_text()
    assert all(f"| {v.name} |" in markdown for v in STUDY_VARIANTS) and "seed_sequence" in markdown
    for png in (files.confusion_png, files.sequence_confusion_png):
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert folds_digest(results[0].fold_indices) == document["variants"][0]["folds_digest"]


def test_the_seed_variant_is_the_served_classifier():
    from model.checkpoint import DEFAULT_CHECKPOINT, read_checkpoint

    served = read_checkpoint(DEFAULT_CHECKPOINT)["parts"]["activity"]
    built = SEED.classifier(DEFAULT_ACTIVITIES).state_dict()
    assert {f"activity.{k}": tuple(v.shape) for k, v in built.items()} == {
        k: tuple(v.shape) for k, v in served.items()
    }


def separable(per_class: int = 40, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    rng = np.random.default_rng(seed)
    labels = np.repeat(np.arange(4), per_class)
    features = rng.uniform(0.3, 0.7, (len(labels), 51)).astype(np.float32)
    for label in range(4):
        features[labels == label, label * 8 : label * 8 + 8] += 0.3
    return torch.from_numpy(features), torch.from_numpy(labels)


def test_the_linear_baseline_learns_a_separable_set_but_not_shuffled_labels():
    torch.set_num_threads(1)
    linear = next(v for v in STUDY_VARIANTS if v.name == "linear")
    settings = StudySettings.seed_hyper(folds=5, epochs=25, seed=0)
    features, labels = separable()
    folds = stratified_folds(labels.numpy(), 5, 0)
    learnt = score_variant(linear, features, labels, DEFAULT_ACTIVITIES, folds, settings)
    assert learnt.cv["macro"]["accuracy"]["mean"] > 0.9
    shuffled = labels[torch.from_numpy(np.random.default_rng(3).permutation(len(labels)))]
    chance = score_variant(
        linear, features, shuffled, DEFAULT_ACTIVITIES, stratified_folds(shuffled.numpy(), 5, 0), settings
    )
    assert chance.cv["macro"]["accuracy"]["mean"] < 0.5
    with pytest.raises(ValueError, match="features"):
        score_variant(SEED, features[:, :40], labels, DEFAULT_ACTIVITIES, folds, settings)


def test_study_is_an_option_of_eval_activity_only(tmp_path):
    from typer.testing import CliRunner

    from workers.cli import app

    result = CliRunner().invoke(app, ["eval", "prn", "--study", "--out", str(tmp_path)])
    assert result.exit_code != 0 and "eval activity" in result.output
    assert not (tmp_path / "activity_study.json").exists()
