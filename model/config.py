"""The network's configuration, its presets, and device selection.

Two presets:

* ``default`` — the seed's sizes, for real training: ResNet-50 (the seed reports 50/101/152; 50 is the
  cheapest of them), FPNs of 256 channels, keypoint subnet of 128 filters per level (512 concatenated),
  RetinaNet head of 256 channels, PRN on a 56×36 grid with one hidden layer of 1024, activity MLP
  3072 → 128.
* ``demo`` — small enough to train on a CPU and to commit (fp16 checkpoint ≤ 50 MB): ResNet-18, FPNs of
  128, keypoint subnet of 64 per level, PRN on a 28×18 grid with 256 hidden units; activity MLP unchanged.

Input pre-processing (see ``model/preprocess.py``): BGR, zero-centred by ``pixel_mean_bgr`` (the ImageNet
mean in BGR order, Keras "caffe" mode as used by keras-retinanet, no scaling), letterboxed onto an
``input_size`` canvas (default 480×480).

Heatmap targets are Gaussians of ``heatmap_sigma`` heatmap pixels (default 2.0 at stride 4, i.e. 8 input
pixels, as in Simple Baselines).
"""

from __future__ import annotations

from typing import Literal

import torch
from pydantic import BaseModel, ConfigDict, Field, field_validator

from model.predictions import DEFAULT_ACTIVITIES

BackboneDepth = Literal[18, 34, 50, 101, 152]


class ModelConfig(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    preset_name: str = "default"

    # Backbone and FPNs
    backbone_depth: BackboneDepth = 50
    fpn_channels: int = Field(256, ge=8)
    input_size: tuple[int, int] = (480, 480)  # canvas (height, width); multiples of 32
    pixel_mean_bgr: tuple[float, float, float] = (103.939, 116.779, 123.68)

    # Keypoint subnet
    keypoint_width: int = Field(128, ge=4)  # filters of each level's two 3×3 convs; concat = 4×
    heatmap_sigma: float = Field(2.0, gt=0)  # target Gaussian σ in heatmap pixels (stride 4)
    peak_top_k: int = Field(30, ge=1)  # peaks kept per joint at the stage boundary
    peak_threshold: float = 0.1  # heatmap value below which a local maximum is not a peak
    peak_nms_kernel: int = Field(3, ge=1)  # max-pool window of the peak NMS (odd)

    # RetinaNet person detector (one class)
    anchor_sizes: tuple[int, ...] = (32, 64, 128, 256, 512)  # one per level P3–P7
    anchor_scales: tuple[float, ...] = (1.0, 2 ** (1 / 3), 2 ** (2 / 3))
    anchor_aspect_ratios: tuple[float, ...] = (0.5, 1.0, 2.0)  # height / width
    fg_iou_threshold: float = 0.5
    bg_iou_threshold: float = 0.4
    box_loss: Literal["smooth_l1", "l1", "giou"] = "smooth_l1"
    candidate_score_threshold: float = 0.05  # per-anchor score before NMS
    candidates_per_level: int = 1000
    nms_iou_threshold: float = 0.5
    person_score_threshold: float = 0.3  # persons reported (the display threshold of infer/serve)
    max_persons: int = Field(30, ge=1)
    # COCO evaluation keeps low-score persons: AP integrates precision over every score, so cutting at the
    # display threshold caps it (≈ 0.5 for the demo preset even with perfect keypoints).
    eval_score_threshold: float = Field(0.05, ge=0, le=1)
    eval_max_persons: int = Field(20, ge=1)  # COCO's keypoint maxDets

    # Pose Residual Network
    prn_grid: tuple[int, int] = (56, 36)  # (height, width)
    prn_hidden: int = Field(1024, ge=1)
    prn_depth: int = Field(1, ge=1)  # hidden layers
    prn_dropout: float = Field(0.5, ge=0, lt=1)
    prn_box_enlarge: float = Field(0.2, ge=0)  # each box grows by this fraction of its size
    prn_sigma: float = Field(1.0, gt=0)  # peak Gaussians on the grid, in grid cells
    prn_window: int = Field(2, ge=0)  # candidate score = output summed over a (2w+1)² window
    # "auto": the network when the checkpoint marks the PRN part trained, else the nearest-peak baseline
    prn_assignment: Literal["auto", "network", "baseline"] = "auto"

    # Activity classifier
    activity_hidden: tuple[int, ...] = (3072, 128)
    activity_dropout: float = Field(0.3, ge=0, lt=1)
    activities: tuple[str, ...] = DEFAULT_ACTIVITIES

    @field_validator("input_size")
    @classmethod
    def _multiple_of_32(cls, value: tuple[int, int]) -> tuple[int, int]:
        if any(side <= 0 or side % 32 for side in value):
            raise ValueError(f"input_size sides must be positive multiples of 32, got {value}")
        return value

    @field_validator("anchor_sizes")
    @classmethod
    def _five_levels(cls, value: tuple[int, ...]) -> tuple[int, ...]:
        if len(value) != 5:
            raise ValueError(f"anchor_sizes needs one size per level P3–P7 (5), got {len(value)}")
        return value

    @field_validator("activities")
    @classmethod
    def _some_activities(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        if len(value) < 2 or len(set(value)) != len(value):
            raise ValueError(f"activities must be at least two distinct labels, got {value}")
        return value

    @field_validator("peak_nms_kernel")
    @classmethod
    def _odd(cls, value: int) -> int:
        if value % 2 == 0:
            raise ValueError("peak_nms_kernel must be odd")
        return value

    @classmethod
    def preset(cls, name: str, **overrides: object) -> ModelConfig:
        if name not in PRESETS:
            raise ValueError(f"unknown preset {name!r}; choose one of {sorted(PRESETS)}")
        return cls(**{**PRESETS[name], "preset_name": name, **overrides})

    @property
    def num_anchors(self) -> int:
        return len(self.anchor_scales) * len(self.anchor_aspect_ratios)


PRESETS: dict[str, dict[str, object]] = {
    "default": {},
    "demo": {
        "backbone_depth": 18,
        "fpn_channels": 128,
        "keypoint_width": 64,
        "peak_top_k": 20,
        "prn_grid": (28, 18),
        "prn_hidden": 256,
        "prn_window": 1,
        "prn_sigma": 0.75,
        # The CPU-trained demo detector scores its duplicates up to ~0.4: on unseen synthetic scenes
        # (480 px, 30 scenes) 0.4/0.4 gives precision 0.80 at recall 0.50 where 0.3/0.5 gave 0.37 at 0.66.
        "person_score_threshold": 0.4,
        "nms_iou_threshold": 0.4,
    },
}


def resolve_device(device: torch.device | str | None = None) -> torch.device:
    """``None``/"auto" → CUDA when present, else CPU; anything else is parsed by torch."""
    if device is None or (isinstance(device, str) and device.lower() == "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        resolved = torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise ValueError(f"not a torch device: {device!r}") from exc
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {device!r} requested but CUDA is not available")
    return resolved
