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
from model.preprocess import compute_letterbox, preprocess
from model.test_time import TestTimeAugmentation


class BackboneStage:
    """ResNet + both FPNs + RetinaNet head + keypoint subnet + NMS + peak extraction.

    ``test_time`` (default: one view) runs each frame at several scales and/or mirrored and merges the
    views (``model.test_time``)."""

    def __init__(
        self,
        model: MultiPoseNet,
        device: torch.device | str | None = None,
        test_time: TestTimeAugmentation | None = None,
    ) -> None:
        self.device = resolve_device(device)
        self.config = model.config
        self.test_time = test_time or TestTimeAugmentation()
        self.module = model.detector().to(self.device).eval()

    def __call__(self, images: Sequence[np.ndarray]) -> list[Detections]:
        """images: HxWx3 uint8 BGR frames of any sizes (letterboxed here) → one Detections per frame."""
        if len(images) == 0:
            return []
        mean = self.config.pixel_mean_bgr
        if self.test_time.single_view:
            batch, letterboxes = preprocess(images, self.config.input_size, mean)
            with torch.inference_mode():
                return self.module.detect(batch.to(self.device), letterboxes)
        views = []
        for canvas in self.test_time.canvases(self.config.input_size):
            batch, letterboxes = preprocess(images, canvas, mean)
            views.append((batch.to(self.device), letterboxes))
        references = [compute_letterbox(*image.shape[:2], self.config.input_size) for image in images]
        with torch.inference_mode():
            return self.module.detect_views(views, references, flip=self.test_time.flip)


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
