"""PRN training inputs that look like the backbone's peaks, not like ground truth.

The seed trains the PRN on ground-truth keypoints and boxes; at inference it reads the keypoint subnet's
peaks inside the detector's boxes. Measured on held-out synthetic scenes with the demo checkpoint (stage 2),
the two differ in four ways, and each is drawn here at training time:

* boxes: the detector's are loose (box AP75 0.08) — each side of the person's box moves by a Gaussian
  share ``box_jitter`` of its width/height;
* joint error: peaks lie a few pixels off the joint (median 4.4 px) — every labelled point moves by a
  Gaussian ``point_jitter`` × √(box area);
* left/right: a lateral joint's channel often holds the other side's joint too (knee channels correlate at
  0.99) — per image and left/right pair, with ``mirror_prob`` every person's joint of one side is also a
  peak in the other side's channel;
* misses: ``drop_prob`` of the peaks are gone (their joint is then no target either).

The target stays the person's own (moved) joints: what the assignment should pick among the candidates.
Randomness comes from torch's generator, which the DataLoader seeds per worker and epoch.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from model.predictions import FLIP_PAIRS
from model.train.coco import Person


@dataclass(frozen=True)
class PrnNoise:
    """Amounts of each perturbation (all 0: the seed's clean ground truth)."""

    box_jitter: float = 0.0
    point_jitter: float = 0.0
    mirror_prob: float = 0.0
    drop_prob: float = 0.0

    def __post_init__(self) -> None:
        for name in ("box_jitter", "point_jitter"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"{name} must lie in [0, 1], got {getattr(self, name)}")
        for name in ("mirror_prob", "drop_prob"):
            if not 0.0 <= getattr(self, name) < 1.0:
                raise ValueError(f"{name} must lie in [0, 1), got {getattr(self, name)}")

    @property
    def active(self) -> bool:
        return any((self.box_jitter, self.point_jitter, self.mirror_prob, self.drop_prob))


def _gaussian(*shape: int) -> np.ndarray:
    return torch.randn(*shape, dtype=torch.float64).numpy()


def _uniform(*shape: int) -> np.ndarray:
    return torch.rand(*shape, dtype=torch.float64).numpy()


def noisy_people(people: list[Person], index: int, noise: PrnNoise) -> tuple[list[Person], np.ndarray]:
    """The labelled ``people`` with moved and dropped points, and person ``index``'s moved box (4,).

    Returns copies; the input is left as it is."""
    moved: list[Person] = []
    for person in people:
        points = person.keypoints.astype(np.float32).copy()
        labelled = points[:, 2] > 0
        width, height = np.maximum(person.box[2:] - person.box[:2], 1.0)
        scale = float(np.sqrt(width * height))
        points[labelled, :2] += (noise.point_jitter * scale * _gaussian(int(labelled.sum()), 2)).astype(
            np.float32
        )
        dropped = labelled & (_uniform(len(points)) < noise.drop_prob)
        points[dropped, 2] = 0
        moved.append(Person(points, person.box.copy(), person.iscrowd, person.activity, person.annotation_id))
    box = people[index].box.astype(np.float32).copy()
    size = np.maximum(box[2:] - box[:2], 1.0)
    box += (noise.box_jitter * np.concatenate([size, size]) * _gaussian(4)).astype(np.float32)
    box[2:] = np.maximum(box[2:], box[:2] + 1.0)
    return moved, box


def mirrored_channels(peaks: torch.Tensor, noise: PrnNoise) -> torch.Tensor:
    """peaks (17, P, 3) → (17, 2P, 3): for each left/right pair drawn with ``mirror_prob``, the channels of
    both sides also hold the other side's points (the slots [P, 2P) are zero elsewhere)."""
    extra = torch.zeros_like(peaks)
    for left, right in FLIP_PAIRS:
        if float(_uniform(1)[0]) < noise.mirror_prob:
            extra[left], extra[right] = peaks[right], peaks[left]
    return torch.cat([peaks, extra], dim=1)
