"""The interface the stream consumer calls to turn decoded frames into per-person predictions.

``LocalPipeline`` runs the in-process model (the same ``PosePipeline`` that ``posestream infer`` uses)
in a worker thread; the Ray Serve pipeline calls deployment handles with the same interface. One model
version per frame: the consumer reads ``model_version`` with each call's results.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import TYPE_CHECKING, Protocol, runtime_checkable

import numpy as np

if TYPE_CHECKING:
    from model.pipeline import PosePipeline
    from model.predictions import PersonPrediction


@runtime_checkable
class FramePipeline(Protocol):
    model_version: str

    async def __call__(self, images: list[np.ndarray]) -> list[list[PersonPrediction]]:
        """images: (H, W, 3) uint8 BGR, any sizes → one list of persons per image, in order."""
        ...


class LocalPipeline:
    """A PosePipeline in this process; ``predict`` runs in a thread so the event loop keeps going."""

    def __init__(self, pose: PosePipeline):
        self.pose = pose

    @classmethod
    def load(
        cls, checkpoint: str | None = None, device: str | None = None, preset: str = "demo"
    ) -> LocalPipeline:
        from model.pipeline import PosePipeline

        return cls(PosePipeline.load(checkpoint=checkpoint, device=device, preset=preset))

    @property
    def model_version(self) -> str:
        return self.pose.model_version

    @property
    def device_type(self) -> str:
        """Where the model computes ("cpu", "cuda"): the consumer's window queues a batch only on a GPU."""
        return self.pose.device.type

    async def __call__(self, images: Sequence[np.ndarray]) -> list[list[PersonPrediction]]:
        if not images:
            return []
        return await asyncio.to_thread(self.pose.predict, list(images))
