"""Drawing with track ids (a colour per track, stable across frames; smoothed activity in the label) and
face blur from the head keypoints."""

from __future__ import annotations

import numpy as np
import pytest

from model.draw import draw_predictions, person_label, track_color
from model.predictions import PersonPrediction
from model.privacy import blur_faces, head_region

HEAD = [(100, 50), (95, 45), (105, 45), (90, 48), (110, 48)]  # nose, eyes, ears: 20 px ear to ear


def person(head_score: float = 0.9, box=(80.0, 40.0, 120.0, 160.0), activity="walking") -> PersonPrediction:
    keypoints = np.zeros((17, 3), np.float32)
    for joint, (x, y) in enumerate(HEAD):
        keypoints[joint] = (x, y, head_score)
    keypoints[5:] = (100.0, 100.0, 0.0)  # body joints not found
    return PersonPrediction(box, 0.9, keypoints, activity, {activity: 0.8, "running": 0.2})


def noise(height: int = 200, width: int = 200, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)


def test_track_colours_are_a_function_of_the_id_and_differ_between_ids() -> None:
    colors = [track_color(track_id) for track_id in range(1, 11)]
    assert colors == [track_color(track_id) for track_id in range(1, 11)]
    assert len(set(colors)) == 10
    for a, b in zip(colors, colors[1:], strict=False):  # neighbours are far apart, not shades of one
        assert sum(abs(x - y) for x, y in zip(a, b, strict=True)) > 120


def test_a_track_keeps_its_colour_from_frame_to_frame_whatever_its_position() -> None:
    blank = np.zeros((200, 200, 3), np.uint8)
    first = draw_predictions(blank, [person(), person(box=(10.0, 10.0, 50.0, 150.0))], [3, 7], [None, None])
    # next frame: track 7 comes first in the list and has moved
    second = draw_predictions(blank, [person(box=(20.0, 12.0, 60.0, 150.0)), person()], [7, 3])
    assert tuple(first[100, 10]) == track_color(7)  # left edge of track 7's box, frame 1
    assert tuple(second[100, 20]) == track_color(7)  # and frame 2
    assert tuple(first[100, 80]) == tuple(second[100, 80]) == track_color(3)
    untracked = draw_predictions(blank, [person()])  # no ids: the index palette, not a track colour
    assert tuple(untracked[100, 80]) != track_color(3)


def test_the_label_shows_the_track_and_prefers_the_smoothed_activity() -> None:
    assert person_label(person(), 7, "running") == "#7 running"
    assert person_label(person(), 7, None) == "#7 walking 0.80"
    assert person_label(person(), None, None) == "walking 0.80"
    with pytest.raises(ValueError, match="track_ids has 1 entries for 2 persons"):
        draw_predictions(np.zeros((50, 50, 3), np.uint8), [person(), person()], [1])


def test_blur_changes_the_head_region_and_nothing_far_outside_it() -> None:
    image = noise()
    region = head_region(person())
    assert region is not None
    assert (region.cx, region.cy) == pytest.approx((100.0, 47.2))
    assert region.radius == pytest.approx(18.0)  # 0.9 × ear-to-ear, within the box-width bounds
    blurred = blur_faces(image, [person()])
    assert blurred.shape == image.shape and not np.shares_memory(blurred, image)
    ys, xs = np.mgrid[: image.shape[0], : image.shape[1]]
    distance = np.hypot(xs - region.cx, ys - region.cy)
    change = np.abs(blurred.astype(int) - image.astype(int)).sum(axis=2)
    inner = distance <= 0.8 * region.radius
    assert change[inner].mean() > 60  # noise averaged away: each pixel moves far
    assert (change[inner] > 0).mean() > 0.95
    assert not change[distance > region.radius + 1].any()  # outside the disc: untouched


def test_no_blur_without_confident_head_keypoints_and_a_lone_joint_uses_the_box_width() -> None:
    image = noise()
    assert np.array_equal(blur_faces(image, [person(head_score=0.1)]), image)
    assert head_region(person(head_score=0.1)) is None
    lone = person()
    lone.keypoints[1:5, 2] = 0.0  # the nose alone: no spread
    region = head_region(lone)
    assert region is not None and region.radius == pytest.approx(0.15 * 40)
    assert (region.cx, region.cy) == (100.0, 50.0)
    # a stray head keypoint far away cannot blur more than half the box width around the head
    stray = person()
    stray.keypoints[4] = (190.0, 190.0, 0.9)
    assert head_region(stray).radius == pytest.approx(0.5 * 40)
    # a head half out of the frame blurs what is inside
    edge = person(box=(-20.0, 0.0, 20.0, 120.0))
    edge.keypoints[:5, :2] -= (100.0, 45.0)
    assert blur_faces(image, [edge])[:10, :10].tolist() != image[:10, :10].tolist()
