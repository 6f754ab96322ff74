"""The single-process path: load a checkpoint (or an untrained model) and run the three stages."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Literal, get_args

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
# What runs the backbone stage's network: PyTorch, or ONNX Runtime (``model.onnx_backend``, the onnx
# extra). PRN and activity run in PyTorch either way.
Backend = Literal["torch", "onnx"]
BACKENDS: tuple[str, ...] = get_args(Backend)


class PosePipeline:
    def __init__(
        self,
        model: MultiPoseNet,
        model_version: str,
        device: torch.device | str | None = None,
        test_time: TestTimeAugmentation | None = None,
        backend: Backend = "torch",
        onnx_dir: str | Path | None = None,
    ) -> None:
        if backend not in BACKENDS:
            raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
        if onnx_dir is not None and backend != "onnx":
            raise ValueError("onnx_dir is for backend 'onnx'")
        self.model = model
        self.model_version = model_version
        self.activities: tuple[str, ...] = model.activities
        self.trained_parts: frozenset[str] = frozenset(model.trained_parts)
        self.trained: bool = self.trained_parts == frozenset(PARTS)
        self.device = resolve_device(device)
        self.test_time = test_time or TestTimeAugmentation()
        self.backend: Backend = backend
        if backend == "onnx":
            from model.onnx_backend import OnnxBackboneStage  # onnxruntime only when asked for

            self.backbone: BackboneStage = OnnxBackboneStage(
                model, self.device, self.test_time, graph_dir=onnx_dir, model_version=model_version
            )
        else:
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
        backend: Backend = "torch",
        onnx_dir: str | Path | None = None,
    ) -> PosePipeline:
        """``checkpoint=None`` → ``DEFAULT_CHECKPOINT`` if it exists, else an untrained ``preset`` model
        (``trained`` False, logged loudly). An explicit path that cannot be loaded raises CheckpointError.

        ``backend="onnx"`` runs the backbone's network in onnxruntime: from ``onnx_dir`` (a ``posestream
        export onnx`` folder of this checkpoint) or, when None, an export made once into the cache."""
        if backend not in BACKENDS:  # before loading anything
            raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
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
        return cls(model, version, device, test_time, backend=backend, onnx_dir=onnx_dir)

    def predict(self, images: Sequence[np.ndarray]) -> list[list[PersonPrediction]]:
        """Frames (HxWx3 uint8 BGR) → per frame, its persons: the three stages a server runs, in a row."""
        return self.activity(self.residual(self.backbone(images)))


__all__ = ["CheckpointError", "PosePipeline"]
