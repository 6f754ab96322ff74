"""PRN training inputs perturbed as the backbone's peaks are: loose boxes, joint error, left/right
channels holding both sides, missed peaks — and targets that stay the person's own joints."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from model.config import ModelConfig
from model.predictions import FLIP_PAIRS
from model.train.coco import Person
from model.train.prn_noise import PrnNoise, mirrored_channels, noisy_people
from model.train.samples import prn_sample

LEFT_KNEE, RIGHT_KNEE = 13, 14


def _people() -> list[Person]:
    rng = np.random.default_rng(0)
    points = np.concatenate([rng.uniform(20, 80, (17, 2)), np.full((17, 1), 2.0)], axis=1).astype(np.float32)
    points[LEFT_KNEE, :2], points[RIGHT_KNEE, :2] = (30.0, 70.0), (70.0, 70.0)  # knees far apart
    box = np.array([10, 10, 90, 90], np.float32)
    return [Person(points, box, False), Person(points + [40, 0, 0], box + [40, 0, 40, 0], False)]


def _argmax_xy(plane: torch.Tensor) -> tuple[int, int]:
    index = int(plane.argmax())
    return index % plane.shape[1], index // plane.shape[1]


def test_no_noise_is_the_clean_sample():
    people, config = _people(), ModelConfig()
    clean = prn_sample(people, 0, config)
    quiet = prn_sample(people, 0, config, PrnNoise())
    assert all(torch.equal(a, b) for a, b in zip(clean, quiet, strict=True))


def test_mirrored_channels_hold_the_other_side_and_the_target_does_not():
    people, config = _people()[:1], ModelConfig()
    torch.manual_seed(0)
    inputs, target = prn_sample(people, 0, config, PrnNoise(mirror_prob=0.99))
    clean_inputs, clean_target = prn_sample(people, 0, config)
    # the left-knee channel now peaks at the right knee too (a second blob), the target did not move
    assert float(inputs[LEFT_KNEE].sum()) > 1.5 * float(clean_inputs[LEFT_KNEE].sum())
    assert torch.allclose(inputs[LEFT_KNEE], torch.maximum(clean_inputs[LEFT_KNEE], clean_inputs[RIGHT_KNEE]))
    assert torch.equal(target, clean_target)


def test_mirror_swaps_only_pairs_and_keeps_the_original_slots():
    peaks = torch.rand(17, 3, 3)
    torch.manual_seed(1)
    out = mirrored_channels(peaks, PrnNoise(mirror_prob=0.99))
    assert out.shape == (17, 6, 3) and torch.equal(out[:, :3], peaks)
    for left, right in FLIP_PAIRS:
        assert torch.equal(out[left, 3:], peaks[right]) and torch.equal(out[right, 3:], peaks[left])
    assert torch.count_nonzero(out[0, 3:]) == 0  # the nose has no other side


def test_moved_points_move_the_target_with_them_and_dropped_ones_leave_it():
    people = _people()
    torch.manual_seed(2)
    moved, box = noisy_people(people, 0, PrnNoise(box_jitter=0.1, point_jitter=0.05, drop_prob=0.3))
    assert people[0].keypoints[0, 0] == _people()[0].keypoints[0, 0]  # the input is left as it is
    shift = np.linalg.norm(moved[0].keypoints[:, :2] - people[0].keypoints[:, :2], axis=1)
    assert 0 < np.median(shift) < 15  # 0.05 × √(80·80) = 4 px per axis
    dropped = moved[0].keypoints[:, 2] == 0
    assert 0 < dropped.sum() < 17
    assert not np.array_equal(box, people[0].box) and np.all(box[2:] > box[:2])

    config = ModelConfig()
    torch.manual_seed(3)
    inputs, target = prn_sample(people, 0, config, PrnNoise(point_jitter=0.05, drop_prob=0.3))
    planes = target.flatten(1).sum(1)
    assert ((planes == 0) | torch.isclose(planes, torch.ones_like(planes))).all()
    assert not torch.equal(inputs, prn_sample(people, 0, config)[0])
    for joint in torch.nonzero(planes > 0).flatten().tolist():  # the target sits on one of the input's peaks
        x, y = _argmax_xy(target[joint])
        assert float(inputs[joint, y, x]) > 0.6  # a blob's top, off the grid's pixel centres by < ½ px


@pytest.mark.parametrize("field", ["box_jitter", "point_jitter", "mirror_prob", "drop_prob"])
def test_out_of_range_amounts_are_refused(field):
    with pytest.raises(ValueError, match=field):
        PrnNoise(**{field: 1.5})
