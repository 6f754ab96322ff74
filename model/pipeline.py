"""The single-process path: load a checkpoint (or an untrained model) and run the three stages."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import structlog
import torch

from model.checkpoint import DEFAULT_CHECKPOINT, CheckpointError, load_checkpoint
from model.config import ModelConfig, resolve_device
from model.multiposenet import PARTS, MultiPoseNet
from model.predictions import PersonPrediction
from model.stages import ActivityStage, BackboneStage, ResidualStage
from model.test_time import TestTimeAugmentation

UNTRAINED_SEED = 0  # an untrained model is still the same network on every run


class PosePipeline:
    def __init__(
        self,
        model: MultiPoseNet,
        model_version: str,
        device: torch.device | str | None = None,
        test_time: TestTimeAugmentation | None = None,
    ) -> None:
        self.model = model
        self.model_version = model_version
        self.activities: tuple[str, ...] = model.activities
        self.trained_parts: frozenset[str] = frozenset(model.trained_parts)
        self.trained: bool = self.trained_parts == frozenset(PARTS)
        self.device = resolve_device(device)
        self.test_time = test_time or TestTimeAugmentation()
        self.backbone = BackboneStage(model, self.device, self.test_time)
        self.residual = ResidualStage(model, self.device)
        self.activity = ActivityStage(model, self.device)

    @classmethod
    def load(
        cls,
        checkpoint: str | Path | None = None,
        device: str | None = None,
        preset: str = "demo",
        test_time: TestTimeAugmentation | None = None,
    ) -> PosePipeline:
        """``checkpoint=None`` → ``DEFAULT_CHECKPOINT`` if it exists, else an untrained ``preset`` model
        (``trained`` False, logged loudly). An explicit path that cannot be loaded raises CheckpointError."""
        log = structlog.get_logger()  # looked up per call: follows logging reconfiguration
        if checkpoint is None and DEFAULT_CHECKPOINT.is_file():
            checkpoint = DEFAULT_CHECKPOINT
        if checkpoint is None:
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(UNTRAINED_SEED)
                model = MultiPoseNet(ModelConfig.preset(preset))
            version = f"untrained-{preset}"
            log.warning(
                "UNTRAINED MODEL: no checkpoint found, predictions are meaningless",
                expected_checkpoint=str(DEFAULT_CHECKPOINT),
                preset=preset,
            )
        else:
            model, meta = load_checkpoint(checkpoint)
            version = str(meta["version"])
            untrained = sorted(set(PARTS) - model.trained_parts)
            if untrained:
                log.warning(
                    "checkpoint has untrained parts", checkpoint=str(checkpoint), untrained_parts=untrained
                )
        model.eval()
        return cls(model, version, device, test_time)

    def predict(self, images: Sequence[np.ndarray]) -> list[list[PersonPrediction]]:
        """Frames (HxWx3 uint8 BGR) → per frame, its persons: the three stages a server runs, in a row."""
        return self.activity(self.residual(self.backbone(images)))


__all__ = ["CheckpointError", "PosePipeline"]
