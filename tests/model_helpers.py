"""Shared builders for the model tests (small, fast networks and hand-made scenes)."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import torch

from model.config import ModelConfig
from model.multiposenet import MultiPoseNet

# A standing person in a unit box: (x, y) of the 17 COCO joints as fractions of the box.
TEMPLATE_POSE = np.array(
    [
        (0.50, 0.08),  # nose
        (0.46, 0.06),
        (0.54, 0.06),
        (0.42, 0.08),
        (0.58, 0.08),
        (0.35, 0.22),  # shoulders
        (0.65, 0.22),
        (0.28, 0.38),  # elbows
        (0.72, 0.38),
        (0.25, 0.52),  # wrists
        (0.75, 0.52),
        (0.40, 0.55),  # hips
        (0.60, 0.55),
        (0.40, 0.75),  # knees
        (0.60, 0.75),
        (0.40, 0.95),  # ankles
        (0.60, 0.95),
    ],
    dtype=np.float32,
)


def small_config(**overrides: object) -> ModelConfig:
    """Demo preset on a 64×64 canvas with a tiny PRN, for fast CPU tests."""
    values: dict[str, object] = {
        "input_size": (64, 64),
        "fpn_channels": 32,
        "keypoint_width": 16,
        "prn_grid": (14, 9),
        "prn_hidden": 32,
        "activity_hidden": (64, 16),
        "peak_top_k": 5,
    }
    values.update(overrides)
    return ModelConfig.preset("demo", **values)


def make_model(config: ModelConfig, seed: int = 0) -> MultiPoseNet:
    torch.manual_seed(seed)
    return MultiPoseNet(config).eval()


def demo_checkpoint(path: Path, version: str, seed: int = 0, max_persons: int = 3) -> Path:
    """An untrained demo-preset checkpoint at 128 px (seeded weights) whose score thresholds are 0, so that
    every frame yields up to ``max_persons`` persons: for the tests that load a model from disk."""
    from model.checkpoint import save_checkpoint

    config = ModelConfig.preset(
        "demo",
        input_size=(128, 128),
        person_score_threshold=0.0,
        candidate_score_threshold=0.0,
        max_persons=max_persons,
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = MultiPoseNet(config)
    return save_checkpoint(path, model, version=version)


def force_detections(model: MultiPoseNet, logit: float = 4.0) -> MultiPoseNet:
    """Make the untrained detector fire everywhere (NMS keeps a few boxes), so every stage has persons
    to work on. The peak threshold is set low through the config by the caller."""
    with torch.no_grad():
        model.detection_head.head.classification_head.cls_logits.bias.fill_(logit)
    return model


def pose_in_box(box: tuple[float, float, float, float]) -> np.ndarray:
    x1, y1, x2, y2 = box
    xy = TEMPLATE_POSE * np.array([x2 - x1, y2 - y1], dtype=np.float32) + np.array([x1, y1], dtype=np.float32)
    return xy.astype(np.float32)


def draw_stick_figure(height: int = 160, width: int = 120) -> np.ndarray:
    """A BGR picture of one stick figure on a plain background."""
    image = np.full((height, width, 3), (200, 220, 235), dtype=np.uint8)
    joints = pose_in_box((width * 0.25, height * 0.1, width * 0.75, height * 0.95)).round().astype(int)
    for a, b in (
        (5, 7),
        (7, 9),
        (6, 8),
        (8, 10),
        (5, 6),
        (11, 12),
        (5, 11),
        (6, 12),
        (11, 13),
        (13, 15),
        (12, 14),
        (14, 16),
    ):
        cv2.line(image, tuple(joints[a]), tuple(joints[b]), (40, 40, 40), 3)
    cv2.circle(image, tuple(joints[0]), max(3, width // 14), (40, 40, 40), -1)
    return image


def person_annotation(annotation_id: int, image_id: int, box: list[float], keypoints: np.ndarray) -> dict:
    """One COCO person annotation: ``box`` x, y, w, h; ``keypoints`` (17, 3) x, y, v."""
    x, y, w, h = box
    return {
        "id": annotation_id,
        "image_id": image_id,
        "category_id": 1,
        "iscrowd": 0,
        "bbox": [x, y, w, h],
        "area": w * h * 0.6,
        "num_keypoints": int((keypoints[:, 2] > 0).sum()),
        "keypoints": keypoints.reshape(-1).tolist(),
    }
