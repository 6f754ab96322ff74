"""Per-activity pose sampling: a still walker shows a stride that a standing person's stance does not."""

from __future__ import annotations

import math

import numpy as np

from model.data.poses import View, gait_pose, pose_body, project, sample_body_shape, sample_pose
from model.data.skeleton import KEYPOINT_INDEX

ANKLES = (KEYPOINT_INDEX["left_ankle"], KEYPOINT_INDEX["right_ankle"])


def _side_view_feet_apart(activity: str, seed: int, yaw: float) -> float:
    """Horizontal ankle distance in a side view, in leg lengths (hip to ankle, straight)."""
    rng = np.random.default_rng(seed)
    shape = sample_body_shape(rng)
    keypoints = pose_body(shape, sample_pose(rng, activity)).keypoints
    uv, _ = project(keypoints, View(yaw, 10.0, 100.0, 0.0, 0.0), stature=1.0)
    return abs(uv[ANKLES[0], 0] - uv[ANKLES[1], 0]) / (100.0 * (shape.thigh + shape.shin))


def test_side_view_walkers_always_stride_wider_than_typical_stance():
    standing = np.array([_side_view_feet_apart("standing", s, 90.0 + 180.0 * (s % 2)) for s in range(300)])
    walking = np.array([_side_view_feet_apart("walking", s, 90.0 + 180.0 * (s % 2)) for s in range(300)])
    assert walking.min() > np.percentile(standing, 90)
    assert np.median(walking) > 3 * np.median(standing)


def test_gait_is_continuous_in_phase_for_sequences():
    """Sequences advance the phase with one style: neighbouring phases give neighbouring joints."""
    for running in (False, True):
        shape = sample_body_shape(np.random.default_rng(3))
        previous = None
        for step in range(121):
            pose = gait_pose(np.random.default_rng(7), 2 * math.pi * step / 120, running=running)
            keypoints = pose_body(shape, pose).keypoints
            if previous is not None:
                assert np.abs(keypoints - previous).max() < 0.03  # body heights per 3 degrees of phase
            previous = keypoints
