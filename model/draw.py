"""Drawing persons (box, skeleton, activity label) on a BGR image."""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np

from model.predictions import COCO_SKELETON, PersonPrediction

_PALETTE = ((0, 200, 255), (255, 128, 0), (80, 220, 80), (220, 80, 220), (60, 60, 255), (255, 255, 0))


def draw_predictions(image_bgr: np.ndarray, persons: Sequence[PersonPrediction]) -> np.ndarray:
    """A copy of the image with each person's box, skeleton (found joints only) and activity label."""
    canvas = np.ascontiguousarray(image_bgr).copy()
    thickness = max(1, round(max(canvas.shape[:2]) / 400))
    for index, person in enumerate(persons):
        color = _PALETTE[index % len(_PALETTE)]
        x1, y1, x2, y2 = (round(v) for v in person.bbox)
        cv2.rectangle(canvas, (x1, y1), (x2, y2), color, thickness)
        keypoints = np.asarray(person.keypoints, dtype=np.float32)
        found = keypoints[:, 2] > 0
        for a, b in COCO_SKELETON:
            if found[a] and found[b]:
                pa = (round(float(keypoints[a, 0])), round(float(keypoints[a, 1])))
                pb = (round(float(keypoints[b, 0])), round(float(keypoints[b, 1])))
                cv2.line(canvas, pa, pb, color, thickness, cv2.LINE_AA)
        for x, y, _ in keypoints[found]:
            cv2.circle(
                canvas, (round(float(x)), round(float(y))), thickness + 1, (255, 255, 255), -1, cv2.LINE_AA
            )
        label = f"{person.activity} {person.activity_scores.get(person.activity, 0.0):.2f}"
        scale = 0.4 * thickness
        (width, height), _ = cv2.getTextSize(label, cv2.FONT_HERSHEY_SIMPLEX, scale, 1)
        top = max(y1 - height - 4, 0)
        cv2.rectangle(canvas, (x1, top), (x1 + width + 4, top + height + 4), color, -1)
        cv2.putText(
            canvas,
            label,
            (x1 + 2, top + height + 1),
            cv2.FONT_HERSHEY_SIMPLEX,
            scale,
            (0, 0, 0),
            1,
            cv2.LINE_AA,
        )
    return canvas
