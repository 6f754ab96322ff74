"""A picture of training samples with their targets overlaid (``posestream data show --targets``).

Each tile: the augmented crop (mean added back), the max over the joint heatmaps in a colour map, the
area where W = 0 darkened and hatched red, the detection boxes in green and the keypoints (left joints
blue, right joints orange) joined by the skeleton.
"""

from __future__ import annotations

import math
from pathlib import Path

import cv2
import numpy as np
import torch

from model.data.skeleton import COCO_KEYPOINT_NAMES, COCO_SKELETON
from model.train.targets import PoseTrainingSet


def render_target_tile(item: dict, mean_bgr: tuple[float, float, float]) -> np.ndarray:
    """One dataset item (``PoseTrainingSet[i]``) → (H, W, 3) uint8 BGR picture."""
    mean = torch.tensor(mean_bgr)[:, None, None]
    image = (item["image"] + mean).clamp(0, 255).byte().permute(1, 2, 0).numpy().copy()
    height, width = image.shape[:2]
    joints = item["heatmaps"][:-1].amax(dim=0).clamp(0, 1).numpy()
    heat = cv2.applyColorMap((cv2.resize(joints, (width, height)) * 255).astype(np.uint8), cv2.COLORMAP_JET)
    alpha = cv2.resize(joints, (width, height))[..., None] * 0.6
    tile = (image * (1 - alpha) + heat * alpha).astype(np.uint8)

    ignored = cv2.resize(1.0 - item["mask"][0].numpy(), (width, height), interpolation=cv2.INTER_NEAREST) > 0
    if ignored.any():
        hatch = (np.add.outer(np.arange(height), np.arange(width)) % 8) < 2
        tile[ignored] = (tile[ignored] * 0.4).astype(np.uint8)
        tile[ignored & hatch] = (0, 0, 255)

    for x1, y1, x2, y2 in item["boxes"].tolist():
        cv2.rectangle(tile, (round(x1), round(y1)), (round(x2), round(y2)), (0, 255, 0), 1)
    for person in item["keypoints"].numpy():
        for a, b in COCO_SKELETON:
            if person[a, 2] > 0 and person[b, 2] > 0:
                cv2.line(tile, _pt(person[a]), _pt(person[b]), (255, 255, 255), 1, cv2.LINE_AA)
        for j, (x, y, v) in enumerate(person):
            if v > 0:
                name = COCO_KEYPOINT_NAMES[j]
                colour = (255, 128, 0) if name.startswith("left") else (0, 128, 255)
                cv2.circle(tile, (round(x), round(y)), 2, colour, -1, cv2.LINE_AA)
    return tile


def render_target_sheet(
    dataset: PoseTrainingSet, out_png: str | Path, count: int = 8, columns: int = 4
) -> Path:
    """Write ``count`` samples of ``dataset`` with their targets as one PNG grid; returns its path."""
    if count < 1:
        raise ValueError(f"count must be ≥ 1, got {count}")
    if len(dataset) == 0:
        raise ValueError("the dataset is empty")
    mean = dataset.augment_config.pixel_mean_bgr
    tiles = [render_target_tile(dataset[i % len(dataset)], mean) for i in range(count)]
    columns = min(columns, count)
    rows = math.ceil(count / columns)
    tile_h, tile_w = tiles[0].shape[:2]
    sheet = np.full((rows * (tile_h + 4), columns * (tile_w + 4), 3), 32, np.uint8)
    for n, tile in enumerate(tiles):
        r, c = divmod(n, columns)
        sheet[r * (tile_h + 4) : r * (tile_h + 4) + tile_h, c * (tile_w + 4) : c * (tile_w + 4) + tile_w] = (
            tile
        )
    out_png = Path(out_png)
    out_png.parent.mkdir(parents=True, exist_ok=True)
    if not cv2.imwrite(str(out_png), sheet):
        raise ValueError(f"cannot write {out_png}")
    return out_png


def target_sheet_from_folder(
    data: str | Path,
    out_png: str | Path,
    count: int = 8,
    split: str = "train",
    input_size: int = 480,
    seed: int = 0,
    augment: bool = True,
) -> Path:
    """``posestream data show --targets``: a COCO-format folder (synthetic or COCO 2017 root) → PNG sheet."""
    from model.config import ModelConfig
    from model.train.augment import AugmentConfig
    from model.train.coco import CocoKeypoints

    model_config = ModelConfig.preset("default")
    side = max(32, input_size - input_size % 32)
    dataset = PoseTrainingSet(
        CocoKeypoints.from_root(data, split),
        AugmentConfig(input_size=(side, side), pixel_mean_bgr=model_config.pixel_mean_bgr, enabled=augment),
        sigma=model_config.heatmap_sigma,
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return render_target_sheet(dataset, out_png, count)


def _pt(point: np.ndarray) -> tuple[int, int]:
    return round(float(point[0])), round(float(point[1]))
