"""The three stages a server may place on different machines; each holds its slice of one MultiPoseNet.

Only the dataclasses of ``model.predictions`` (numpy) go in and out. Each stage moves its slice of the
given model to its device in place (the model's other parts are untouched), sets it to eval mode and
runs under ``torch.inference_mode``.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from model.config import resolve_device
from model.multiposenet import MultiPoseNet
from model.predictions import Detections, PersonPrediction, PosedPerson
from model.preprocess import preprocess


class BackboneStage:
    """ResNet + both FPNs + RetinaNet head + keypoint subnet + NMS + peak extraction."""

    def __init__(self, model: MultiPoseNet, device: torch.device | str | None = None) -> None:
        self.device = resolve_device(device)
        self.config = model.config
        self.module = model.detector().to(self.device).eval()

    def __call__(self, images: Sequence[np.ndarray]) -> list[Detections]:
        """images: HxWx3 uint8 BGR frames of any sizes (letterboxed here) → one Detections per frame."""
        if len(images) == 0:
            return []
        batch, letterboxes = preprocess(images, self.config.input_size, self.config.pixel_mean_bgr)
        with torch.inference_mode():
            return self.module.detect(batch.to(self.device), letterboxes)


class ResidualStage:
    """Pose Residual Network (or its nearest-peak baseline when the PRN is untrained)."""

    def __init__(self, model: MultiPoseNet, device: torch.device | str | None = None) -> None:
        self.device = resolve_device(device)
        self.use_network = model.prn_uses_network
        self.module = model.prn.to(self.device).eval()

    def __call__(self, detections: Sequence[Detections]) -> list[list[PosedPerson]]:
        with torch.inference_mode():
            return self.module.assign(detections, use_network=self.use_network)


class ActivityStage:
    """Activity MLP on each person's keypoints."""

    def __init__(self, model: MultiPoseNet, device: torch.device | str | None = None) -> None:
        self.device = resolve_device(device)
        self.activities = model.activities
        self.module = model.activity.to(self.device).eval()

    def __call__(self, persons: Sequence[Sequence[PosedPerson]]) -> list[list[PersonPrediction]]:
        with torch.inference_mode():
            return self.module.classify(persons)
