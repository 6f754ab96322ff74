"""Rendering: visibility flags follow what is really drawn; poses stay on the ground."""

from __future__ import annotations

from dataclasses import replace

import cv2
import numpy as np
import pytest

from model.data.poses import Pose, View, pose_body, sample_body_shape, sample_pose, standing_pose
from model.data.render import draw_person, project_person, sample_appearance
from model.data.scene import PersonSpec, render_scene
from model.data.skeleton import DEFAULT_ACTIVITIES, KEYPOINT_INDEX, PART_INDEX

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


# ---------------------------------------------------------------- facing cues: front, back and profile

SKIN, HAIR, SHIRT = (125, 194, 241), (20, 20, 25), (170, 60, 50)


def _drawn(yaw: float, ppu: float):
    """One neutral adult drawn straight (no camera finish) on grey: image, labels, projection."""
    rng = np.random.default_rng(3)
    shape = replace(sample_body_shape(rng), stature=1.0, head_radius=0.064, head_width=0.05)
    app = replace(
        sample_appearance(rng),
        skin=SKIN,
        hair=HAIR,
        shirt=SHIRT,
        pattern="solid",
        long_hair=False,
        neckline="v",
        shirt_front="placket",
    )
    side = int(ppu * 1.1) + 20
    view = View(yaw, 5.0, ppu, side / 2, side - 10.0)
    person = project_person(shape, pose_body(shape, Pose()), view, app)
    img = np.full((side, side, 3), 128, np.uint8)
    labels = np.zeros((side, side), np.uint8)
    draw_person(img, labels, person, app, 16, np.array([0.0, -1.0]))
    return img, labels, person


def _luma(img: np.ndarray) -> np.ndarray:
    return img.astype(np.float64) @ [0.114, 0.587, 0.299]


def _skin_like(img: np.ndarray) -> np.ndarray:
    b, r = img[..., 0].astype(int), img[..., 2].astype(int)
    return (r - b > 60) & (r > 120)


def _darkest_near(luma: np.ndarray, point, reach: int = 0) -> float:
    """The darkest of the pixels touching a sub-pixel point (and ``reach`` pixels around them)."""
    x, y = int(np.floor(point[0])), int(np.floor(point[1]))
    return float(luma[y - reach : y + 2 + reach, x - reach : x + 2 + reach].min())


@pytest.mark.parametrize("ppu", [95.0, 400.0])  # a person ~95 px tall (head ~10 px wide) and a close-up
def test_front_shows_a_face_and_the_back_only_hair(ppu):
    front, front_labels, person = _drawn(0.0, ppu)
    back, back_labels, _ = _drawn(180.0, ppu)
    head = 16 + PART_INDEX["head"]
    front_head, back_head = front_labels == head, back_labels == head
    assert _skin_like(front)[front_head].mean() > 0.4
    inner = cv2.erode(
        back_head.astype(np.uint8), np.ones((3, 3), np.uint8), iterations=max(1, int(ppu / 100))
    )
    assert _skin_like(back)[inner > 0].mean() < 0.02  # hair all over (ears and nape at the rim only)
    luma = _luma(front)
    skin = float(np.median(luma[front_head & _skin_like(front)]))
    left_eye, right_eye = (
        person.keypoints[KEYPOINT_INDEX["left_eye"]],
        person.keypoints[KEYPOINT_INDEX["right_eye"]],
    )
    for eye in (left_eye, right_eye):  # two separate eyes, even on a small head
        assert _darkest_near(luma, eye) < 0.6 * skin
    between = (left_eye + right_eye) / 2
    assert (
        luma[int(round(between[1])), int(round(between[0]))]
        > max(_darkest_near(luma, left_eye), _darkest_near(luma, right_eye)) + 0.2 * skin
    )
    height = person.head_size[1]
    mouth = person.parts[-1].points[0] + [0.0, 0.53 * height]  # below the nose, on the head's centre line
    assert _darkest_near(luma, mouth) < 0.85 * skin


@pytest.mark.parametrize("ppu", [95.0, 400.0])
def test_shirt_front_has_a_neckline_and_placket_the_back_does_not(ppu):
    torso = 16 + PART_INDEX["torso"]
    seen = {}
    for name, yaw in (("front", 0.0), ("back", 180.0)):
        img, labels, person = _drawn(yaw, ppu)
        on_torso = labels == torso
        neckline = int((_skin_like(img) & on_torso).sum())
        # the placket: the shirt's centre line against the cloth a little to either side
        luma = _luma(img)
        top = (
            person.keypoints[KEYPOINT_INDEX["left_shoulder"]]
            + person.keypoints[KEYPOINT_INDEX["right_shoulder"]]
        ) / 2
        low = (
            person.keypoints[KEYPOINT_INDEX["left_hip"]] + person.keypoints[KEYPOINT_INDEX["right_hip"]]
        ) / 2
        off = max(3, int(ppu * 0.03))
        contrast = []
        for t in np.linspace(0.5, 0.85, 8):
            x, y = np.round(top + (low - top) * t).astype(int)
            contrast.append(abs(luma[y, x] - (luma[y, x - off] + luma[y, x + off]) / 2))
        seen[name] = (neckline, float(np.median(contrast)))
    assert seen["front"][0] > 0.0025 * ppu**2 and seen["back"][0] == 0, seen  # skin in the opening
    assert seen["front"][1] > 15 and seen["back"][1] < 6, seen


@pytest.mark.parametrize("yaw", [90.0, 270.0])
def test_profile_shows_the_face_on_the_facing_side_and_hair_behind(yaw):
    img, labels, person = _drawn(yaw, 200.0)
    head = labels == 16 + PART_INDEX["head"]
    skin = _skin_like(img) & head
    assert 0.15 < skin.sum() / head.sum() < 0.75  # face and ear, the rest hair
    centre = person.parts[-1].points[0]
    ys, xs = np.nonzero(skin)
    assert np.sign(xs.mean() - centre[0]) == np.sign(person.facing[0])
    eye_x = person.keypoints[[KEYPOINT_INDEX["left_eye"], KEYPOINT_INDEX["right_eye"]], 0]
    near = int(np.argmax(person.depth[[KEYPOINT_INDEX["left_eye"], KEYPOINT_INDEX["right_eye"]]]))
    luma = _luma(img)
    eye = person.keypoints[KEYPOINT_INDEX["left_eye"] + near]
    reach = int(0.25 * person.head_size[0])  # the eye is painted on the head's surface, over its keypoint
    assert _darkest_near(luma, eye, reach) < 0.6 * float(np.median(luma[skin]))  # the near eye is drawn
    assert abs(eye_x[near] - centre[0]) > 0.3 * person.head_size[0]  # ... toward the facing side
