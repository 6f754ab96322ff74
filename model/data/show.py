"""Contact sheets: dataset images with keypoints, skeletons, boxes and activity labels drawn.

``draw_annotations`` works on any COCO person-keypoints annotation list, so real COCO data can
be checked the same way. ``make_contact_sheet`` takes an optional ``overlay`` callback
(image, image record, annotations) -> image, for extra layers such as training targets.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Sequence
from pathlib import Path

import cv2
import numpy as np

from model.data.skeleton import COCO_SKELETON, DEFAULT_ACTIVITIES

ACTIVITY_COLOURS_BGR = {
    "walking": (60, 200, 60),
    "running": (40, 60, 230),
    "sitting": (230, 160, 40),
    "standing": (40, 210, 230),
}
_LEFT, _RIGHT, _CENTRE = (255, 128, 0), (0, 128, 255), (200, 200, 200)

Overlay = Callable[[np.ndarray, dict, list[dict]], np.ndarray]


def _limb_colour(a: int, b: int) -> tuple[int, int, int]:
    if a % 2 == 1 and b % 2 == 1:
        return _LEFT
    if a % 2 == 0 and b % 2 == 0 and a > 0 and b > 0:
        return _RIGHT
    return _CENTRE


def draw_annotations(img: np.ndarray, annotations: Sequence[dict], thickness: int = 2) -> np.ndarray:
    """Draw boxes, skeletons (v>0 joints), keypoints (filled: seen, ring: hidden) and activity labels."""
    out = img.copy()
    for ann in annotations:
        kps = np.asarray(ann.get("keypoints", [0] * 51), np.float64).reshape(-1, 3)
        activity = ann.get("activity", "person")
        box_colour = ACTIVITY_COLOURS_BGR.get(activity, (255, 255, 255))
        x, y, w, h = ann["bbox"]
        cv2.rectangle(out, (int(x), int(y)), (int(x + w), int(y + h)), box_colour, thickness, cv2.LINE_AA)
        for a, b in COCO_SKELETON:
            if kps[a, 2] > 0 and kps[b, 2] > 0:
                pa, pb = tuple(int(v) for v in kps[a, :2]), tuple(int(v) for v in kps[b, :2])
                cv2.line(out, pa, pb, _limb_colour(a, b), thickness, cv2.LINE_AA)
        for k, (px, py, v) in enumerate(kps):
            if v <= 0:
                continue
            colour = _LEFT if k % 2 == 1 else (_RIGHT if k > 0 else _CENTRE)
            fill = -1 if v >= 2 else 1
            cv2.circle(out, (int(px), int(py)), thickness + 1, colour, fill, cv2.LINE_AA)
        label = activity + (f" #{ann['track_id']}" if "track_id" in ann else "")
        org = (int(x) + 2, max(int(y) - 4, 12))
        cv2.putText(out, label, org, cv2.FONT_HERSHEY_SIMPLEX, 0.45, (0, 0, 0), 3, cv2.LINE_AA)
        cv2.putText(out, label, org, cv2.FONT_HERSHEY_SIMPLEX, 0.45, box_colour, 1, cv2.LINE_AA)
    return out


def load_split(data_dir: str | Path, split: str = "val") -> tuple[list[dict], dict[int, list[dict]]]:
    """Image records and per-image annotations from ``annotations/person_keypoints_<split>.json``."""
    path = Path(data_dir) / "annotations" / f"person_keypoints_{split}.json"
    if not path.exists():
        raise ValueError(f"no annotation file {path}")
    dataset = json.loads(path.read_text())
    by_image: dict[int, list[dict]] = {}
    for ann in dataset["annotations"]:
        by_image.setdefault(ann["image_id"], []).append(ann)
    return dataset["images"], by_image


def tile_images(tiles: Sequence[np.ndarray], tile_size: int = 320, columns: int | None = None) -> np.ndarray:
    """Lay equally scaled tiles out on a grid (letterboxed, dark gaps)."""
    if not tiles:
        raise ValueError("no images to put on a contact sheet")
    columns = columns or math.ceil(math.sqrt(len(tiles)))
    rows = math.ceil(len(tiles) / columns)
    gap = 4
    sheet = np.full((rows * (tile_size + gap) + gap, columns * (tile_size + gap) + gap, 3), 24, np.uint8)
    for i, tile in enumerate(tiles):
        scale = tile_size / max(tile.shape[:2])
        resized = cv2.resize(
            tile, (round(tile.shape[1] * scale), round(tile.shape[0] * scale)), interpolation=cv2.INTER_AREA
        )
        r, c = divmod(i, columns)
        y0, x0 = gap + r * (tile_size + gap), gap + c * (tile_size + gap)
        sheet[y0 : y0 + resized.shape[0], x0 : x0 + resized.shape[1]] = resized
    return sheet


def make_contact_sheet(
    data_dir: str | Path,
    split: str = "val",
    count: int = 16,
    tile_size: int = 320,
    overlay: Overlay | None = None,
) -> np.ndarray:
    """A BGR contact sheet of the first ``count`` images of a split with their annotations drawn."""
    if count < 1:
        raise ValueError(f"count must be positive, got {count}")
    images, by_image = load_split(data_dir, split)
    tiles = []
    for record in images[:count]:
        path = Path(data_dir) / "images" / split / record["file_name"]
        img = cv2.imread(str(path), cv2.IMREAD_COLOR)
        if img is None:
            raise ValueError(f"cannot read image {path}")
        anns = by_image.get(record["id"], [])
        thickness = max(1, round(max(img.shape[:2]) / tile_size))
        drawn = draw_annotations(img, anns, thickness)
        if overlay is not None:
            drawn = overlay(drawn, record, anns)
        tiles.append(drawn)
    return tile_images(tiles, tile_size)


def legend_text() -> str:
    return ", ".join(f"{name}: box colour BGR{ACTIVITY_COLOURS_BGR[name]}" for name in DEFAULT_ACTIVITIES)
