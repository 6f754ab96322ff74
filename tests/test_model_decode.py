"""Pre-processing and heatmap decoding: letterbox round trips, planted peaks recovered."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from model.decode import (
    HEATMAP_STRIDE,
    canvas_to_heatmap,
    dark_offsets,
    find_peaks,
    heatmap_to_canvas,
    render_gaussians,
    render_keypoint_targets,
)
from model.preprocess import letterbox_points, preprocess, unletterbox_boxes, unletterbox_points

MEAN = (103.939, 116.779, 123.68)


def test_letterbox_keeps_aspect_and_round_trips_points():
    rng = np.random.default_rng(0)
    wide = np.empty((60, 200, 3), dtype=np.uint8)
    wide[:] = (10, 120, 240)  # B, G, R
    tall = rng.integers(0, 255, (90, 30, 3), dtype=np.uint8)
    batch, boxes = preprocess([wide, tall], (96, 128), MEAN)
    assert batch.shape == (2, 3, 96, 128) and batch.dtype == torch.float32
    # The wide image fills the width, the tall one the height; both keep their aspect ratio.
    assert boxes[0].scale == pytest.approx(128 / 200) and boxes[1].scale == pytest.approx(96 / 90)
    # Padding is the mean colour (rounded to uint8), so ≈ 0 after centring; BGR order is kept.
    assert batch[0, :, 0, :].abs().max() <= 0.5 and batch[1, :, :, 0].abs().max() <= 0.5
    centre = batch[0, :, 48, 64] + torch.tensor(MEAN)
    assert torch.allclose(centre, torch.tensor([10.0, 120.0, 240.0]), atol=1e-4)
    points = rng.uniform([0, 0], [199, 59], (10, 2)).astype(np.float32)
    back = unletterbox_points(letterbox_points(points, boxes[0]), boxes[0])
    np.testing.assert_allclose(back, points, atol=1e-3)
    canvas_box = np.concatenate(
        [letterbox_points([[10, 5]], boxes[0]), letterbox_points([[150, 50]], boxes[0])], 1
    )
    np.testing.assert_allclose(unletterbox_boxes(canvas_box, boxes[0]), [[10, 5, 150, 50]], atol=1e-3)


@pytest.mark.parametrize("bad", [np.zeros((10, 10, 4), np.uint8), np.zeros((10, 10, 3), np.float32), "image"])
def test_preprocess_rejects_bad_frames(bad):
    with pytest.raises(ValueError):
        preprocess([bad], (64, 64), MEAN)


def test_planted_peaks_recovered_within_quarter_pixel():
    rng = np.random.default_rng(1)
    height, width, joints, people = 48, 64, 17, 3
    # Peaks well apart (grid cells) at random sub-pixel positions.
    cells = np.array(
        [(x, y) for x in range(8, width - 8, 16) for y in range(8, height - 8, 14)], dtype=np.float32
    )
    truth = np.stack([cells[rng.choice(len(cells), people, replace=False)] for _ in range(joints)])
    truth = truth + rng.uniform(-0.5, 0.5, truth.shape).astype(np.float32)  # (J, P, 2)
    heights = rng.uniform(0.5, 1.0, (joints, people)).astype(np.float32)
    maps = render_gaussians(
        torch.from_numpy(truth), torch.ones(joints, people, dtype=torch.bool), height, width, 2.0
    )
    # Different heights per person: render each person separately and take the max.
    maps = torch.stack(
        [
            torch.stack(
                [
                    heights[j, p]
                    * render_gaussians(
                        torch.from_numpy(truth[j, p : p + 1]),
                        torch.ones(1, dtype=torch.bool),
                        height,
                        width,
                        2.0,
                    )
                    for p in range(people)
                ]
            ).amax(0)
            for j in range(joints)
        ]
    )
    peaks = find_peaks(maps[None], top_k=people + 2, threshold=0.1)[0].numpy()  # (J, K, 3)
    assert peaks.shape == (joints, people + 2, 3)
    integer_errors, refined_errors = [], []
    for j in range(joints):
        found = peaks[j][peaks[j, :, 2] > 0]
        assert len(found) == people, "one peak per planted Gaussian, nothing else"
        for p in range(people):
            nearest = found[np.argmin(np.linalg.norm(found[:, :2] - truth[j, p], axis=1))]
            refined_errors.append(np.abs(nearest[:2] - truth[j, p]))
            integer_errors.append(np.abs(np.round(truth[j, p]) - truth[j, p]))
            assert nearest[2] == pytest.approx(heights[j, p], abs=0.05)
    refined, integer = np.array(refined_errors), np.array(integer_errors)
    assert refined.max() <= 0.25 + 1e-5  # within a quarter pixel on each axis, so well within one pixel
    assert refined.mean() < integer.mean()  # the sub-pixel refinement helps
    # Unused slots are zeros.
    assert np.all(peaks[:, people:] == 0)


def test_keypoint_targets_round_trip_through_canvas_coordinates():
    canvas_points = torch.tensor([[[37.3, 21.8, 2.0]] * 17, [[90.6, 70.1, 1.0]] * 16 + [[0.0, 0.0, 0.0]]])
    targets = render_keypoint_targets(canvas_points, (32, 32), sigma=2.0)  # canvas 128×128, stride 4
    assert targets.shape == (18, 32, 32)
    assert torch.allclose(targets[-1], 1 - targets[:17].amax(0))
    peaks = find_peaks(targets[None, :17], top_k=4, threshold=0.3)[0]
    peaks[..., :2] = heatmap_to_canvas(peaks[..., :2], HEATMAP_STRIDE)
    for joint in range(17):
        found = peaks[joint][peaks[joint, :, 2] > 0]
        expected = canvas_points[: (2 if joint < 16 else 1), joint, :2]
        assert len(found) == len(expected)  # the unlabelled joint of person 2 has no peak
        for point in expected:
            # a quarter heatmap pixel = one canvas pixel on each axis
            assert torch.min((found[:, :2] - point).abs().amax(dim=1)) <= 1.0 + 1e-4


@pytest.mark.parametrize("blur_sigma", [0.0, 0.5, 1.0])
def test_dark_refinement_recovers_sub_pixel_centres_of_rendered_targets(blur_sigma):
    """Ground-truth heatmaps decode back to their joints: within 0.05 heatmap px (the former quarter-pixel
    step towards the higher neighbour quantised to a half-pixel grid, errors up to ≈ 0.35 px)."""
    rng = np.random.default_rng(7)
    height, width, people = 40, 56, 3
    # Three persons in separate columns, every joint at a random sub-pixel canvas position.
    columns = np.array([40.0, 110.0, 180.0])
    x = columns[:, None] + rng.uniform(-12, 12, (people, 17))
    y = rng.uniform(24, 136, (people, 17))
    keypoints = torch.from_numpy(np.stack([x, y, np.full_like(x, 2.0)], axis=-1)).float()  # (P, 17, 3)
    targets = render_keypoint_targets(keypoints, (height, width), sigma=2.0)  # (18, H, W)
    peaks = find_peaks(targets[None, :17], top_k=people + 1, threshold=0.2, blur_sigma=blur_sigma)[0]
    truth = canvas_to_heatmap(keypoints[..., :2])  # (P, 17, 2) heatmap px
    errors = []
    for joint in range(17):
        found = peaks[joint][peaks[joint, :, 2] > 0]
        assert len(found) == people
        distances = torch.cdist(truth[:, joint], found[:, :2])  # (P, found)
        errors.append(distances.min(dim=1).values)
    errors = torch.cat(errors)
    assert errors.max() < 0.05, f"max error {errors.max():.3f} heatmap px"


def test_dark_offsets_fall_back_to_zero_on_border_plateau_and_saddle():
    maps = torch.zeros(1, 3, 9, 9)
    maps[0, 0, 0, 4] = 1.0  # a peak on the border row
    maps[0, 0, 1, 4] = 0.5
    maps[0, 1, 3:6, 3:6] = 1.0  # a plateau: the Hessian is 0 at its centre
    yy, xx = torch.meshgrid(torch.arange(9.0), torch.arange(9.0), indexing="ij")
    maps[0, 2] = torch.exp(((xx - 4.3) ** 2 - (yy - 4.0) ** 2) / 8)  # a saddle at (4.3, 4)
    xs = torch.tensor([[[4], [4], [4]]])
    ys = torch.tensor([[[0], [4], [4]]])
    offsets = dark_offsets(maps, xs, ys, blur_sigma=0.0)
    assert offsets.shape == (1, 3, 1, 2)
    assert torch.all(offsets == 0)
    # A Gaussian centred 0.3 px right of its integer max moves by 0.3, a far one is clamped to 1 px.
    at_centre = xs[:, :1], torch.tensor([[[4]]])
    centred = torch.exp(-((xx - 4.3) ** 2 + (yy - 4.0) ** 2) / 8)[None, None]
    assert dark_offsets(centred, *at_centre, 0.0)[0, 0, 0, 0] == pytest.approx(0.3, abs=1e-4)
    wide = torch.exp(-((xx - 7.0) ** 2 + (yy - 4.0) ** 2) / 8)[None, None]
    assert dark_offsets(wide, *at_centre, 0.0)[0, 0, 0, 0] == pytest.approx(1.0)


def test_find_peaks_keeps_dtype_empty_slots_and_rejects_bad_input():
    maps = torch.zeros(2, 17, 16, 16, dtype=torch.float16)
    maps[1, 3, 8, 9] = 0.9
    peaks = find_peaks(maps, top_k=3, threshold=0.1)
    assert peaks.shape == (2, 17, 3, 3) and peaks.dtype == torch.float16
    assert torch.count_nonzero(peaks[..., 2]) == 1
    assert float(peaks[1, 3, 0, 2]) == pytest.approx(0.9, abs=1e-3)
    assert torch.all(peaks[0] == 0)
    with pytest.raises(ValueError, match="B, J, H, W"):
        find_peaks(maps[0], top_k=3, threshold=0.1)
    with pytest.raises(ValueError, match="top_k"):
        find_peaks(maps, top_k=0, threshold=0.1)
    with pytest.raises(ValueError, match="nms_kernel"):
        find_peaks(maps, top_k=3, threshold=0.1, nms_kernel=2)
