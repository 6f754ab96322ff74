"""Face blur for annotated output (privacy): each person's head, found from the head keypoints.

The head region is a disc around the found head keypoints (COCO 0–4: nose, eyes, ears, those scored above
``min_score``). Its radius follows the spread of those keypoints (ear to ear is about a head's width), but
never falls below a share of the box width (one joint alone has no spread) nor grows past half of it (a
stray keypoint must not blur the whole body).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np

from model.predictions import PersonPrediction

HEAD_KEYPOINTS = (0, 1, 2, 3, 4)  # nose, left/right eye, left/right ear
SPREAD_GAIN = 0.9  # radius per pixel of the head keypoints' largest distance (head width plus hair)
MIN_BOX_SHARE = 0.15  # smallest radius, share of the box width
MAX_BOX_SHARE = 0.5  # largest radius, share of the box width
MIN_RADIUS = 3.0


@dataclass(frozen=True)
class HeadRegion:
    cx: float
    cy: float
    radius: float

    def contains(self, x: float, y: float) -> bool:
        return (x - self.cx) ** 2 + (y - self.cy) ** 2 <= self.radius**2


def head_region(person: PersonPrediction, min_score: float = 0.2) -> HeadRegion | None:
    """The person's head disc, or None when no head keypoint scores above ``min_score``."""
    keypoints = np.asarray(person.keypoints, np.float64).reshape(-1, 3)[list(HEAD_KEYPOINTS)]
    head = keypoints[keypoints[:, 2] > min_score, :2]
    if not len(head):
        return None
    spread = float(np.linalg.norm(head[:, None, :] - head[None, :, :], axis=-1).max())
    box_width = max(float(person.bbox[2] - person.bbox[0]), 0.0)
    radius = max(SPREAD_GAIN * spread, MIN_BOX_SHARE * box_width, MIN_RADIUS)
    radius = min(radius, max(MAX_BOX_SHARE * box_width, MIN_RADIUS))
    cx, cy = head.mean(axis=0)
    return HeadRegion(float(cx), float(cy), radius)


def blur_faces(
    image_bgr: np.ndarray, persons: Sequence[PersonPrediction], min_score: float = 0.2
) -> np.ndarray:
    """A copy of the image with every person's head region (``head_region``) blurred beyond recognition."""
    canvas = np.ascontiguousarray(image_bgr).copy()
    height, width = canvas.shape[:2]
    for person in persons:
        region = head_region(person, min_score)
        if region is None:
            continue
        r = region.radius
        x1, y1 = max(int(region.cx - r), 0), max(int(region.cy - r), 0)
        x2, y2 = min(int(np.ceil(region.cx + r)) + 1, width), min(int(np.ceil(region.cy + r)) + 1, height)
        if x2 <= x1 or y2 <= y1:
            continue  # the head is outside the frame
        patch = canvas[y1:y2, x1:x2]
        # a kernel as large as the head: features are gone, not just softened
        kernel = 2 * max(int(r), 1) + 1
        blurred = cv2.GaussianBlur(patch, (kernel, kernel), sigmaX=r / 2)
        ys, xs = np.mgrid[y1:y2, x1:x2]
        inside = (xs - region.cx) ** 2 + (ys - region.cy) ** 2 <= r**2
        patch[inside] = blurred[inside]
    return canvas
