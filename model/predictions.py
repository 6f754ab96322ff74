"""Plain per-image / per-person results that cross stage boundaries (numpy only, no torch).

These are the only things a server sends between the backbone, PRN and activity stages, so they stay
small: person boxes and the top-k peaks of each joint, never full heatmaps.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

COCO_KEYPOINT_NAMES: tuple[str, ...] = (
    "nose",
    "left_eye",
    "right_eye",
    "left_ear",
    "right_ear",
    "left_shoulder",
    "right_shoulder",
    "left_elbow",
    "right_elbow",
    "left_wrist",
    "right_wrist",
    "left_hip",
    "right_hip",
    "left_knee",
    "right_knee",
    "left_ankle",
    "right_ankle",
)
NUM_KEYPOINTS = len(COCO_KEYPOINT_NAMES)

# 0-based limb pairs (COCO's 1-based skeleton minus one).
COCO_SKELETON: tuple[tuple[int, int], ...] = (
    (15, 13),
    (13, 11),
    (16, 14),
    (14, 12),
    (11, 12),
    (5, 11),
    (6, 12),
    (5, 6),
    (5, 7),
    (6, 8),
    (7, 9),
    (8, 10),
    (1, 2),
    (0, 1),
    (0, 2),
    (1, 3),
    (2, 4),
    (3, 5),
    (4, 6),
)

# Left/right joint pairs to swap when an image is mirrored horizontally.
FLIP_PAIRS: tuple[tuple[int, int], ...] = (
    (1, 2),
    (3, 4),
    (5, 6),
    (7, 8),
    (9, 10),
    (11, 12),
    (13, 14),
    (15, 16),
)
# joint j of a mirrored person is joint FLIP_INDEX[j] of the unmirrored one
FLIP_INDEX: tuple[int, ...] = tuple(
    next((b if a == j else a for a, b in FLIP_PAIRS if j in (a, b)), j) for j in range(NUM_KEYPOINTS)
)

DEFAULT_ACTIVITIES: tuple[str, ...] = ("walking", "running", "sitting", "standing")


@dataclass(frozen=True)
class Detections:
    """Output of the backbone stage for one image (coordinates in ORIGINAL image pixels)."""

    boxes: np.ndarray  # (N, 4) float32 x1, y1, x2, y2
    scores: np.ndarray  # (N,) float32
    peaks: np.ndarray  # (17, K, 3) float32 x, y, score; score 0 = no peak in that slot
    width: int
    height: int

    @property
    def num_persons(self) -> int:
        return int(self.boxes.shape[0])


@dataclass(frozen=True)
class PosedPerson:
    """Output of the PRN stage: one person's box and one keypoint per joint."""

    bbox: tuple[float, float, float, float]
    score: float
    keypoints: np.ndarray  # (17, 3) float32 x, y, score; score 0 = joint not found


@dataclass(frozen=True)
class PersonPrediction:
    """Output of the activity stage: everything one PersonEvent carries about a person."""

    bbox: tuple[float, float, float, float]
    score: float
    keypoints: np.ndarray  # (17, 3) float32
    activity: str
    activity_scores: dict[str, float] = field(default_factory=dict)

    def to_plain(self) -> dict[str, object]:
        """bbox, score, keypoints ([[x, y, score]] × 17), activity, activity_scores as plain Python
        (the person part of a PersonEvent)."""
        return {
            "bbox": [float(v) for v in self.bbox],
            "score": float(self.score),
            "keypoints": [[float(v) for v in row] for row in np.asarray(self.keypoints).reshape(-1, 3)],
            "activity": self.activity,
            "activity_scores": {name: float(p) for name, p in self.activity_scores.items()},
        }
