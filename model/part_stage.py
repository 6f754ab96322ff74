"""The PRN and activity stages built from their checkpoint part alone, for replicas that run only them.

``model.stages`` slices a whole ``MultiPoseNet`` (and imports it, torchvision with it); a Serve replica of
the PoseResidual or ActivityClassifier stage needs neither the backbone's weights nor torchvision, so it
builds its one module with ``model.checkpoint.load_part`` and runs it here. Same module, same weights,
same outputs as the same stage of the full pipeline (tests/test_part_loading.py).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from model.checkpoint import SINGLE_MODULE_PARTS, load_part
from model.config import ModelConfig, resolve_device
from model.predictions import Detections, PersonPrediction, PosedPerson


def prn_uses_network(config: ModelConfig, trained_parts: set[str]) -> bool:
    """As ``MultiPoseNet.prn_uses_network``: the network, or its nearest-peak baseline while untrained."""
    mode = config.prn_assignment
    return mode == "network" or (mode == "auto" and "prn" in trained_parts)


class ResidualPartStage:
    """PRN on each box's peaks (``model.stages.ResidualStage`` without the rest of the network)."""

    def __init__(self, module: Any, use_network: bool, device: torch.device | str | None = None) -> None:
        self.device = resolve_device(device)
        self.use_network = use_network
        self.module = module.to(self.device).eval()

    def __call__(self, detections: Sequence[Detections]) -> list[list[PosedPerson]]:
        with torch.inference_mode():
            return self.module.assign(detections, use_network=self.use_network)


class ActivityPartStage:
    """The activity MLP on each person's keypoints (``model.stages.ActivityStage`` alone)."""

    def __init__(self, module: Any, device: torch.device | str | None = None) -> None:
        self.device = resolve_device(device)
        self.activities = module.activities
        self.module = module.to(self.device).eval()

    def __call__(self, persons: Sequence[Sequence[PosedPerson]]) -> list[list[PersonPrediction]]:
        with torch.inference_mode():
            return self.module.classify(persons)


def load_part_stage(
    checkpoint: str | Path, part: str, device: str | None = None
) -> tuple[str, ResidualPartStage | ActivityPartStage]:
    """``(model version, stage)`` for ``part`` (prn or activity) from the checkpoint's part alone."""
    if part not in SINGLE_MODULE_PARTS:
        raise ValueError(f"no part stage for {part!r}; parts run alone: {sorted(SINGLE_MODULE_PARTS)}")
    module, meta = load_part(checkpoint, part)
    version = str(meta["version"])
    if part == "prn":
        trained = set(meta.get("trained_parts", []))
        config = ModelConfig.model_validate(meta["config"])
        return version, ResidualPartStage(module, prn_uses_network(config, trained), device)
    return version, ActivityPartStage(module, device)
