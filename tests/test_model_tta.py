"""Multi-scale / flip test-time augmentation (``model.test_time``): the setting, the geometry of merging
views onto one heatmap grid, and the committed checkpoint run with it."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from model_helpers import pose_in_box

from model.checkpoint import DEFAULT_CHECKPOINT
from model.decode import find_peaks, heatmap_to_canvas, render_keypoint_targets
from model.predictions import FLIP_INDEX, NUM_KEYPOINTS
from model.preprocess import compute_letterbox, letterbox_points
from model.test_time import TestTimeAugmentation
from model.view_merge import flip_boxes, resample_to_reference, unflip_heatmaps

SIGMA = 2.0  # heatmap pixels


def test_parse_snaps_each_scale_to_a_multiple_of_32() -> None:
    setting = TestTimeAugmentation.parse("0.75, 1.0,1.25", flip=True)
    assert setting.scales == (0.75, 1.0, 1.25) and setting.flip and not setting.single_view
    assert setting.canvases((480, 480)) == [(352, 352), (480, 480), (608, 608)]
    assert setting.canvases((480, 640)) == [(352, 480), (480, 640), (608, 800)]
    assert TestTimeAugmentation.parse(None).single_view
    assert TestTimeAugmentation.parse("1.0").single_view
    for bad in ("a,b", "0", "1.0,1.0", "9"):
        with pytest.raises(ValueError):
            TestTimeAugmentation.parse(bad)


def person_maps(image_hw: tuple[int, int], canvas_hw: tuple[int, int], joints: np.ndarray) -> torch.Tensor:
    """Ground-truth heatmaps (1, 18, h, w) of one person (image pixels) letterboxed onto ``canvas_hw``."""
    box = compute_letterbox(*image_hw, canvas_hw)
    xy = letterbox_points(joints, box)
    keypoints = torch.from_numpy(np.concatenate([xy, np.full((NUM_KEYPOINTS, 1), 2.0)], axis=1)).float()
    maps = render_keypoint_targets(keypoints[None], (canvas_hw[0] // 4, canvas_hw[1] // 4), SIGMA)
    return maps[None]


def top_peaks_on_canvas(maps: torch.Tensor) -> np.ndarray:
    """(17, 2) the strongest peak of each joint channel, in canvas pixels."""
    peaks = find_peaks(maps[:, :NUM_KEYPOINTS], top_k=1, threshold=0.1)
    return heatmap_to_canvas(peaks[0, :, 0, :2]).numpy()


def test_unflipping_a_mirrored_canvas_gives_the_unmirrored_maps_exactly() -> None:
    joints = pose_in_box((20.0, 10.0, 70.0, 110.0))  # off-centre, and left ≠ right
    maps = person_maps((128, 128), (128, 128), joints)
    mirrored = joints.copy()
    mirrored[:, 0] = 127 - mirrored[:, 0]  # pixel x ↔ W − 1 − x
    mirrored = mirrored[list(FLIP_INDEX)]  # a mirrored person's left joints are the original's right ones
    mirrored_maps = person_maps((128, 128), (128, 128), mirrored)
    torch.testing.assert_close(unflip_heatmaps(mirrored_maps), maps, atol=1e-5, rtol=0)
    assert not torch.allclose(mirrored_maps.flip(-1), maps, atol=1e-2)  # the channel swap matters


def test_flip_boxes_mirrors_edges_about_the_canvas() -> None:
    boxes = torch.tensor([[10.0, 5.0, 30.0, 40.0]])
    torch.testing.assert_close(flip_boxes(boxes, 100), torch.tensor([[70.0, 5.0, 90.0, 40.0]]))
    torch.testing.assert_close(flip_boxes(flip_boxes(boxes, 100), 100), boxes)


@pytest.mark.parametrize("image_hw", [(120, 160), (200, 90)])
@pytest.mark.parametrize("view_side", [96, 160])
def test_a_view_resampled_to_the_reference_grid_puts_joints_where_the_reference_has_them(
    image_hw: tuple[int, int], view_side: int
) -> None:
    height, width = image_hw
    joints = pose_in_box((0.2 * width, 0.1 * height, 0.7 * width, 0.9 * height))
    reference_hw = (128, 128)
    reference = compute_letterbox(height, width, reference_hw)
    view = compute_letterbox(height, width, (view_side, view_side))
    resampled = resample_to_reference(
        person_maps(image_hw, (view_side, view_side), joints), [view], [reference]
    )
    assert resampled.shape == (1, NUM_KEYPOINTS + 1, 32, 32)
    expected = letterbox_points(joints, reference)  # where each joint lies on the reference canvas
    found = top_peaks_on_canvas(resampled)
    # a view's Gaussians keep their width in its own map pixels; their peaks must land on the joints
    np.testing.assert_allclose(found, expected, atol=1.0)
    # a view resampled as if it were the reference (wrong geometry) misses them by whole pixels
    wrong = resample_to_reference(
        person_maps(image_hw, (view_side, view_side), joints), [reference], [reference]
    )
    assert np.abs(top_peaks_on_canvas(wrong) - expected).max() > 3.0


@pytest.fixture(scope="module")
def checkpoint_pipeline():
    from model.pipeline import PosePipeline

    if not DEFAULT_CHECKPOINT.is_file():
        pytest.fail(f"the committed checkpoint {DEFAULT_CHECKPOINT} is missing")
    torch.set_num_threads(min(2, torch.get_num_threads()))
    return PosePipeline.load(DEFAULT_CHECKPOINT, device="cpu")


@pytest.fixture(scope="module")
def scene():
    from model.data.synth import render_example

    image, truths = render_example(20261202, 3, 480, 480, max_people=3)
    assert truths
    return image


def strongest_peaks(detections) -> np.ndarray:
    """(17, 3) x, y, score of the strongest peak of each joint."""
    return detections.peaks[:, 0, :]


def test_one_scale_through_the_view_path_equals_the_plain_path(checkpoint_pipeline, scene) -> None:
    from model.preprocess import preprocess

    stage = checkpoint_pipeline.backbone
    (plain,) = stage([scene])
    batch, letterboxes = preprocess([scene], stage.config.input_size, stage.config.pixel_mean_bgr)
    with torch.inference_mode():
        (views,) = stage.module.detect_views([(batch, letterboxes)], letterboxes)
    assert len(plain.boxes) > 0
    np.testing.assert_allclose(views.boxes, plain.boxes, atol=1e-4)
    np.testing.assert_allclose(views.scores, plain.scores, atol=1e-6)
    np.testing.assert_allclose(views.peaks, plain.peaks, atol=1e-3)


def test_flip_averaging_is_mirror_symmetric(checkpoint_pipeline, scene) -> None:
    """With flip on, a mirrored frame gives the mirrored detections, joints swapped left ↔ right: it
    fails if a flipped view's maps were not flipped back exactly or its channels not swapped."""
    from model.stages import BackboneStage

    stage = BackboneStage(checkpoint_pipeline.model, "cpu", TestTimeAugmentation(flip=True))
    (original,) = stage([scene])
    (mirrored,) = stage([np.ascontiguousarray(scene[:, ::-1])])
    width = scene.shape[1]
    expected = strongest_peaks(original)[list(FLIP_INDEX)]
    found = strongest_peaks(mirrored)
    strong = expected[:, 2] > 0.2
    assert strong.sum() >= 5
    np.testing.assert_allclose(found[strong, 0], width - 1 - expected[strong, 0], atol=0.05)
    np.testing.assert_allclose(found[strong, 1], expected[strong, 1], atol=0.05)
    np.testing.assert_allclose(found[strong, 2], expected[strong, 2], atol=1e-3)
    assert len(mirrored.boxes) == len(original.boxes) > 0
    np.testing.assert_allclose(
        np.sort(mirrored.boxes[:, 0]), np.sort(width - original.boxes[:, 2]), atol=0.05
    )


def test_multi_scale_persons_stay_on_the_single_scale_ones(checkpoint_pipeline, scene) -> None:
    """Scales 0.75, 1, 1.25: each person the plain model finds is found again, its joints within a few
    pixels — a view merged with a wrong letterbox offset or scale would move them by tens of pixels."""
    from model.pipeline import PosePipeline
    from model.train.samples import match_persons

    plain = checkpoint_pipeline.predict([scene])[0]
    multi = PosePipeline(
        checkpoint_pipeline.model, "tta", "cpu", TestTimeAugmentation(scales=(0.75, 1.0, 1.25))
    ).predict([scene])[0]
    assert plain and multi
    matches = match_persons(
        np.array([p.bbox for p in multi]),
        np.array([p.score for p in multi]),
        np.array([p.bbox for p in plain]),
    )
    assert (matches >= 0).sum() >= len(plain) - 1
    distances = [
        np.linalg.norm(multi[i].keypoints[:, :2] - plain[int(m)].keypoints[:, :2], axis=1)
        for i, m in enumerate(matches)
        if m >= 0
    ]
    assert float(np.median(np.concatenate(distances))) < 3.0
