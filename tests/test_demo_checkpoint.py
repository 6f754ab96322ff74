"""The committed demo checkpoint (``model/weights/demo.pt``) on scenes it never saw, as a user receives it.

Generated scenes of a seed no recipe trains on, persons at the display threshold, matched one-to-one
to the people drawn (``model.evaluation.unseen_scenes``). Each check is one that a weak model fails: a
model that predicts no keypoints scores the mean-pose baseline, a detector that fires on texture reports
persons on empty frames, a classifier fed by wrong poses labels matched people at chance.
"""

from __future__ import annotations

import pytest
import torch

from model.checkpoint import DEFAULT_CHECKPOINT
from model.evaluation.empty_frames import evaluate_empty_frames
from model.evaluation.unseen_scenes import UnseenSceneReport, check_unseen_scenes
from model.pipeline import PosePipeline

UNSEEN_SEED = 20261201  # not the recipe's data seed (0) nor its unseen-scene seed (1000003)
SCENES = 16
SIDE = 480  # the committed checkpoint's canvas (trained on 480 px scenes of up to 8 people)
MAX_PEOPLE = 4

# What the committed checkpoint does and must keep doing (measured on stage 5: precision 0.85, recall 0.74,
# median OKS 0.63 against the mean pose's 0.20, activity on ground-truth poses 0.87), each bar above the weak
# baseline beside it.
MIN_PRECISION = 0.6
MIN_RECALL = 0.5
MIN_OKS_OVER_MEAN_POSE = 0.1  # median OKS above a fixed mean pose pasted into the same boxes
MIN_ACTIVITY_TRUTH_POSE = 0.8  # 4 classes: chance is 0.25

# Issue 16's targets, which the committed checkpoint misses (strict xfail: a checkpoint that meets one
# makes its test XPASS, i.e. fail, so the marker is removed when a better model lands).
TARGET_MEDIAN_OKS = 0.5  # measured 0.63 (met: no longer xfail)
TARGET_ACTIVITY_PREDICTED = 0.8  # measured 0.52 on predicted poses of matched persons (stage 5)
TARGET_FALSE_PERSONS_PER_EMPTY_FRAME = 0.05  # 1.9 before stage 2's empty frames; 0.0 after (met)
MISSED = "issue 16: the committed checkpoint misses this target (its card, model/weights/demo.md)"


@pytest.fixture(scope="module")
def shipped() -> PosePipeline:
    assert DEFAULT_CHECKPOINT.is_file(), f"the demo checkpoint is committed at {DEFAULT_CHECKPOINT}"
    torch.set_num_threads(2)
    pipeline = PosePipeline.load(device="cpu")
    assert pipeline.trained and pipeline.model_version.startswith("demo-synthetic")
    return pipeline


@pytest.fixture(scope="module")
def report(shipped: PosePipeline) -> UnseenSceneReport:
    return check_unseen_scenes(shipped, UNSEEN_SEED, SCENES, SIDE, MAX_PEOPLE)


def test_the_shipped_detector_finds_unseen_people_one_to_one(report: UnseenSceneReport) -> None:
    assert report.truth_persons >= SCENES  # the scenes do hold people
    assert report.precision >= MIN_PRECISION, report
    assert report.recall >= MIN_RECALL, report


def test_the_shipped_poses_beat_a_fixed_mean_pose(report: UnseenSceneReport) -> None:
    assert report.matched >= SCENES // 2
    assert report.median_oks >= report.mean_pose_median_oks + MIN_OKS_OVER_MEAN_POSE, report


def test_the_shipped_classifier_labels_ground_truth_poses(report: UnseenSceneReport) -> None:
    assert report.activity_accuracy_truth_pose >= MIN_ACTIVITY_TRUTH_POSE, report


def test_target_the_shipped_poses_clear_oks(report: UnseenSceneReport) -> None:
    assert report.median_oks >= TARGET_MEDIAN_OKS, report


@pytest.mark.xfail(strict=True, reason=MISSED)
def test_target_activities_are_right_on_predicted_poses(report: UnseenSceneReport) -> None:
    assert report.activity_accuracy_predicted >= TARGET_ACTIVITY_PREDICTED, report


def test_target_frames_without_people_yield_no_persons(shipped: PosePipeline) -> None:
    empty = evaluate_empty_frames(shipped, count=24, seed=UNSEEN_SEED, size=(SIDE, SIDE))
    assert empty.false_persons_per_frame <= TARGET_FALSE_PERSONS_PER_EMPTY_FRAME, empty
