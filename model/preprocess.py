"""Frame pre-processing shared by ``posestream infer``, training and the streaming worker.

As in the seed: images stay BGR (OpenCV order), are zero-centred per channel by the dataset mean
(``ModelConfig.pixel_mean_bgr``: the ImageNet mean 103.939, 116.779, 123.68 in BGR, no scaling — Keras
"caffe" mode as keras-retinanet), and are letterboxed — resized with the aspect ratio kept, centred on a
fixed canvas (default 480×480) padded with the mean colour (≈ 0 after centring) — so any frames batch.
``unletterbox_*`` map canvas coordinates back to the original image.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np
import torch


@dataclass(frozen=True)
class Letterbox:
    """How one original image sits on the canvas: canvas = original * scale + pad."""

    scale: float
    pad_x: float
    pad_y: float
    width: int  # original image
    height: int
    canvas_height: int
    canvas_width: int

    @classmethod
    def identity(cls, canvas_height: int, canvas_width: int) -> Letterbox:
        return cls(1.0, 0.0, 0.0, canvas_width, canvas_height, canvas_height, canvas_width)


def check_image(image: object) -> np.ndarray:
    """Validate one frame: HxWx3 uint8 BGR (HxW grayscale is expanded)."""
    if not isinstance(image, np.ndarray):
        raise ValueError(f"an image must be a numpy array, got {type(image).__name__}")
    if image.ndim == 2:
        image = cv2.cvtColor(image, cv2.COLOR_GRAY2BGR)
    if image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"an image must be HxWx3 (BGR), got shape {image.shape}")
    if image.dtype != np.uint8:
        raise ValueError(f"an image must be uint8, got {image.dtype}")
    if image.shape[0] < 2 or image.shape[1] < 2:
        raise ValueError(f"image too small: {image.shape[1]}x{image.shape[0]}")
    return image


def compute_letterbox(height: int, width: int, canvas_hw: tuple[int, int]) -> Letterbox:
    canvas_h, canvas_w = canvas_hw
    scale = min(canvas_h / height, canvas_w / width)
    new_w, new_h = max(1, round(width * scale)), max(1, round(height * scale))
    return Letterbox(
        scale=scale,
        pad_x=float((canvas_w - new_w) // 2),
        pad_y=float((canvas_h - new_h) // 2),
        width=width,
        height=height,
        canvas_height=canvas_h,
        canvas_width=canvas_w,
    )


def letterbox_image(
    image_bgr: np.ndarray, canvas_hw: tuple[int, int], fill_bgr: Sequence[float]
) -> tuple[np.ndarray, Letterbox]:
    """Resize keeping the aspect ratio and centre on the canvas: (canvas_h, canvas_w, 3) uint8."""
    image_bgr = check_image(image_bgr)
    height, width = image_bgr.shape[:2]
    box = compute_letterbox(height, width, canvas_hw)
    new_w, new_h = max(1, round(width * box.scale)), max(1, round(height * box.scale))
    interpolation = cv2.INTER_AREA if box.scale < 1 else cv2.INTER_LINEAR
    resized = cv2.resize(image_bgr, (new_w, new_h), interpolation=interpolation)
    fill = np.asarray([round(c) for c in fill_bgr], dtype=np.uint8)
    canvas = np.empty((canvas_hw[0], canvas_hw[1], 3), dtype=np.uint8)
    canvas[:] = fill
    x0, y0 = int(box.pad_x), int(box.pad_y)
    canvas[y0 : y0 + new_h, x0 : x0 + new_w] = resized
    return canvas, box


def to_tensor(canvases: np.ndarray, mean_bgr: Sequence[float]) -> torch.Tensor:
    """(B, H, W, 3) uint8 BGR → (B, 3, H, W) float32, zero-centred; channels stay BGR."""
    batch = torch.from_numpy(np.ascontiguousarray(canvases)).permute(0, 3, 1, 2).float()
    mean = torch.tensor(mean_bgr, dtype=torch.float32).view(1, 3, 1, 1)
    return batch - mean


def preprocess(
    images: Sequence[np.ndarray], canvas_hw: tuple[int, int], mean_bgr: Sequence[float]
) -> tuple[torch.Tensor, list[Letterbox]]:
    """Frames of any sizes → one batch (B, 3, canvas_h, canvas_w) float32 and each frame's letterbox."""
    if len(images) == 0:
        raise ValueError("preprocess needs at least one image")
    canvases, boxes = [], []
    for image in images:
        canvas, box = letterbox_image(image, canvas_hw, mean_bgr)
        canvases.append(canvas)
        boxes.append(box)
    return to_tensor(np.stack(canvases), mean_bgr), boxes


def letterbox_points(xy: np.ndarray, box: Letterbox) -> np.ndarray:
    """Original-image (..., 2) coordinates → canvas coordinates (for building training targets)."""
    xy = np.asarray(xy, dtype=np.float32)
    return np.stack([xy[..., 0] * box.scale + box.pad_x, xy[..., 1] * box.scale + box.pad_y], axis=-1)


def unletterbox_points(xy: np.ndarray, box: Letterbox) -> np.ndarray:
    """Canvas (..., 2) coordinates → original-image coordinates, clipped to the image."""
    xy = np.asarray(xy, dtype=np.float32)
    x = np.clip((xy[..., 0] - box.pad_x) / box.scale, 0, box.width - 1)
    y = np.clip((xy[..., 1] - box.pad_y) / box.scale, 0, box.height - 1)
    return np.stack([x, y], axis=-1).astype(np.float32)


def unletterbox_boxes(boxes: np.ndarray, box: Letterbox) -> np.ndarray:
    """Canvas (N, 4) x1, y1, x2, y2 → original-image pixels, clipped to [0, width] × [0, height]."""
    boxes = np.asarray(boxes, dtype=np.float32).reshape(-1, 4)
    x = np.clip((boxes[:, 0::2] - box.pad_x) / box.scale, 0, box.width)
    y = np.clip((boxes[:, 1::2] - box.pad_y) / box.scale, 0, box.height)
    return np.stack([x[:, 0], y[:, 0], x[:, 1], y[:, 1]], axis=1).astype(np.float32)
