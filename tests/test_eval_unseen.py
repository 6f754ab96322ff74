"""The measurement code behind the checkpoint checks: OKS, the mean-pose baseline, empty frames."""

from __future__ import annotations

import numpy as np
import pytest

from model.evaluation.empty_frames import EmptyFrameReport, empty_frames, evaluate_empty_frames
from model.evaluation.unseen_scenes import mean_box_pose, oks


def test_oks_is_one_for_the_truth_and_falls_with_the_error():
    truth = np.zeros((17, 3), np.float32)
    truth[:, 0], truth[:, 1], truth[:, 2] = np.arange(17) * 3.0, 50.0, 2
    assert oks(truth, truth, area=900.0) == pytest.approx(1.0)
    near, far = truth.copy(), truth.copy()
    near[:, 0] += 2
    far[:, 0] += 8
    assert 0 < oks(far, truth, 900.0) < oks(near, truth, 900.0) < 1
    truth[:, 2] = 0
    assert oks(near, truth, 900.0) == 0.0  # nothing labelled: nothing to score


def test_the_mean_pose_lies_in_its_box_head_above_feet():
    pose = mean_box_pose(seed=4, scenes=6, size=256, max_people=3)
    assert pose.shape == (17, 2)
    assert (pose > -0.2).all() and (pose < 1.2).all()
    assert pose[0, 1] < pose[15, 1] and pose[0, 1] < pose[16, 1]  # nose above the ankles


def test_empty_frames_are_repeatable_and_varied():
    first, again = empty_frames(8, seed=3, size=(64, 80)), empty_frames(8, seed=3, size=(64, 80))
    assert len(first) == 8 and all(f.shape == (64, 80, 3) and f.dtype == np.uint8 for f in first)
    assert all(np.array_equal(a, b) for a, b in zip(first, again, strict=True))
    assert len({float(f.std()) for f in first}) == 8
    with pytest.raises(ValueError):
        empty_frames(0, seed=3)


class _FiresOnEveryOtherFrame:
    """A stand-in detector: one person of score 0.7 on every other frame."""

    def __init__(self) -> None:
        self.calls = 0

    def predict(self, images):
        from types import SimpleNamespace

        found = []
        for _ in images:
            found.append([SimpleNamespace(score=0.7)] if self.calls % 2 == 0 else [])
            self.calls += 1
        return found


def test_empty_frame_report_counts_false_persons():
    report = evaluate_empty_frames(_FiresOnEveryOtherFrame(), count=6, seed=0, size=(32, 32), batch_size=4)
    assert report == EmptyFrameReport(frames=6, false_persons=3, frames_with_false_persons=3, max_score=0.7)
    assert report.as_dict()["false_persons_per_frame"] == pytest.approx(0.5)
