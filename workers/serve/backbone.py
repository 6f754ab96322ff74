"""PoseBackbone: ResNet + both FPNs + detection and keypoint heads, dynamically batched.

The GPU stage. Its ``num_gpus`` (fractional allowed) comes from ``ray_actor_options`` in the deploy
config only; batching numbers come from ``user_config`` and only fill batches when the deployment's
``max_ongoing_requests`` is at least ``max_batch_size``. Returns boxes and top-k peaks, never heatmaps.
``user_config`` ``backend: onnx`` runs the network in ONNX Runtime (``model.onnx_backend``), same outputs.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from ray import serve

from model.predictions import Detections
from workers.serve.stage import ModelStageReplica


@serve.deployment
class PoseBackbone(ModelStageReplica):
    stage_name = "backbone"
    uses_backend = True

    @staticmethod
    def make_stage(pipeline: Any) -> Any:
        return pipeline.backbone

    def _batched_method(self) -> Any:
        return self._detect

    async def __call__(self, image: np.ndarray, version: str | None = None) -> tuple[str, Detections, str]:
        """One HxWx3 uint8 BGR image -> (version run, its detections, this replica's current version).

        ``version`` None runs the current version; the third item tells callers about a swap."""
        ran, detections = self._unwrap(await self._detect((version, image)))
        return ran, detections, self._versions.current

    @serve.batch
    async def _detect(self, requests: list[tuple[str | None, np.ndarray]]) -> list[Any]:
        return await self._run_batch(requests)
