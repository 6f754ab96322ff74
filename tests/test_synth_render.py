"""Rendering: visibility flags follow what is really drawn; poses stay on the ground."""

from __future__ import annotations

import numpy as np
import pytest

from model.data.poses import View, pose_body, sample_body_shape, sample_pose, standing_pose
from model.data.render import sample_appearance
from model.data.scene import PersonSpec, render_scene
from model.data.skeleton import DEFAULT_ACTIVITIES, KEYPOINT_INDEX

W = H = 240
FACE = [KEYPOINT_INDEX[n] for n in ("nose", "left_eye", "right_eye")]


def _person(seed: int, view: View, activity: str = "standing") -> PersonSpec:
    rng = np.random.default_rng(seed)
    shape = sample_body_shape(rng)
    return PersonSpec(
        shape,
        standing_pose(rng) if activity == "standing" else sample_pose(rng, activity),
        view,
        sample_appearance(rng),
        activity,
    )


def _render(people: list[PersonSpec]):
    background = np.full((H, W, 3), 128, np.uint8)
    return render_scene(np.random.default_rng(0), W, H, {"horizon": 0.3}, people, background=background)


def test_person_in_front_hides_joints_of_person_behind():
    behind = _person(1, View(0.0, 5.0, 150.0, 120.0, 170.0))
    front = _person(2, View(0.0, 5.0, 230.0, 120.0, 235.0))
    front.track_id = 1
    _, truths = _render([behind, front])
    hidden_behind = truths[0].keypoints[:, 2] == 1
    assert hidden_behind[[KEYPOINT_INDEX["left_hip"], KEYPOINT_INDEX["right_hip"]]].all()
    assert (truths[1].keypoints[:, 2] == 2).sum() >= 12  # the front person is mostly seen


def test_back_view_hides_the_face_and_front_view_shows_it():
    _, (back,) = _render([_person(3, View(180.0, 5.0, 200.0, 120.0, 225.0))])
    _, (front,) = _render([_person(3, View(0.0, 5.0, 200.0, 120.0, 225.0))])
    assert (back.keypoints[FACE, 2] == 1).all()
    assert (front.keypoints[FACE, 2] == 2).all()


def test_side_view_hides_the_far_shoulder():
    # yaw 90: the person's left faces the camera's right... the far side is whichever is deeper
    _, (side,) = _render([_person(4, View(90.0, 5.0, 200.0, 120.0, 225.0))])
    flags = side.keypoints[:, 2]
    shoulders = flags[[KEYPOINT_INDEX["left_shoulder"], KEYPOINT_INDEX["right_shoulder"]]]
    assert sorted(shoulders.tolist()) == [1.0, 2.0]


def test_joints_outside_the_image_are_unlabelled():
    _, (cut,) = _render([_person(5, View(0.0, 5.0, 300.0, 120.0, 400.0))])  # feet far below the frame
    ankles = [KEYPOINT_INDEX["left_ankle"], KEYPOINT_INDEX["right_ankle"]]
    assert (cut.keypoints[ankles] == 0).all()
    assert (cut.keypoints[FACE, 2] > 0).all()


@pytest.mark.parametrize("activity", DEFAULT_ACTIVITIES)
def test_bodies_stand_on_the_ground(activity):
    for seed in range(20):
        rng = np.random.default_rng(seed)
        body = pose_body(sample_body_shape(rng), sample_pose(rng, activity))
        feet = min(body.points[n][1] for n in ("left_toe", "right_toe", "left_heel", "right_heel"))
        if activity == "running":
            assert -1e-6 <= feet <= 0.06  # a foot may be off the ground
        elif activity == "sitting" and body.seat_height is None:
            assert feet >= -0.3  # on the floor, feet may sit lower than the hips only a little
        else:
            assert abs(feet) < 1e-6
        assert body.keypoints[KEYPOINT_INDEX["nose"], 1] > body.keypoints[KEYPOINT_INDEX["left_hip"], 1]


def test_sitting_bends_hips_more_than_standing():
    """Learnable but not trivial: mean hip-knee angle separates sitting from standing."""

    def thigh_angle(activity: str) -> float:
        angles = []
        for seed in range(30):
            rng = np.random.default_rng(seed)
            kp = pose_body(sample_body_shape(rng), sample_pose(rng, activity)).keypoints
            thigh = kp[KEYPOINT_INDEX["left_knee"]] - kp[KEYPOINT_INDEX["left_hip"]]
            angles.append(np.degrees(np.arccos(-thigh[1] / np.linalg.norm(thigh))))
        return float(np.mean(angles))

    assert thigh_angle("sitting") > thigh_angle("walking") + 30 > thigh_angle("standing") + 30
