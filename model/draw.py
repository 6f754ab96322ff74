"""Drawing persons (box, skeleton, track id, activity label) on a BGR image.

With track ids each track keeps its colour from frame to frame (``track_color``), so a viewer follows a
person by colour; without them persons are coloured by their index in the frame.
"""

from __future__ import annotations

import colorsys
from collections.abc import Sequence

import cv2
import numpy as np

from model.predictions import COCO_SKELETON, PersonPrediction

_PALETTE = ((0, 200, 255), (255, 128, 0), (80, 220, 80), (220, 80, 220), (60, 60, 255), (255, 255, 0))
_GOLDEN = 0.618033988749895  # hue step: consecutive ids get far-apart hues, any id always the same one


def track_color(track_id: int) -> tuple[int, int, int]:
    """The BGR colour of a track: a function of the id alone, so stable across frames and runs."""
    red, green, blue = colorsys.hsv_to_rgb((track_id * _GOLDEN) % 1.0, 0.75, 1.0)
    return round(blue * 255), round(green * 255), round(red * 255)


def person_label(person: PersonPrediction, track_id: int | None, activity_smoothed: str | None) -> str:
    """``#7 walking`` (smoothed activity of a track), else the frame's own label with its score."""
    prefix = f"#{track_id} " if track_id is not None else ""
    if activity_smoothed:
        return prefix + activity_smoothed
    return f"{prefix}{person.activity} {person.activity_scores.get(person.activity, 0.0):.2f}"


def _check_length(name: str, values: Sequence | None, expected: int) -> None:
    if values is not None and len(values) != expected:
        raise ValueError(f"{name} has {len(values)} entries for {expected} persons")


def draw_predictions(
    image_bgr: np.ndarray,
    persons: Sequence[PersonPrediction],
    track_ids: Sequence[int | None] | None = None,
    activities_smoothed: Sequence[str | None] | None = None,
) -> np.ndarray:
    """A copy of the image with each person's box, skeleton (found joints only) and label; ``track_ids``
    and ``activities_smoothed`` (one per person, None where unknown) add ``#id`` and the smoothed label."""
    _check_length("track_ids", track_ids, len(persons))
    _check_length("activities_smoothed", activities_smoothed, len(persons))
    canvas = np.ascontiguousarray(image_bgr).copy()
    thickness = max(1, round(max(canvas.shape[:2]) / 400))
    for index, person in enumerate(persons):
        track_id = track_ids[index] if track_ids is not None else None
        smoothed = activities_smoothed[index] if activities_smoothed is not None else None
        color = track_color(track_id) if track_id is not None else _PALETTE[index % len(_PALETTE)]
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
        _label(canvas, person_label(person, track_id, smoothed), (x1, y1), color, thickness)
    return canvas


def _label(canvas: np.ndarray, text: str, corner: tuple[int, int], color, thickness: int) -> None:
    x1, y1 = corner
    scale = 0.4 * thickness
    (width, height), _ = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, 1)
    top = max(y1 - height - 4, 0)
    cv2.rectangle(canvas, (x1, top), (x1 + width + 4, top + height + 4), color, -1)
    cv2.putText(
        canvas, text, (x1 + 2, top + height + 1), cv2.FONT_HERSHEY_SIMPLEX, scale, (0, 0, 0), 1, cv2.LINE_AA
    )
