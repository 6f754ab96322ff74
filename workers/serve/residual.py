"""PoseResidual: the pose residual network (PRN) assigning one peak per joint to each box. CPU, batched."""

from __future__ import annotations

from typing import Any

from ray import serve

from model.predictions import Detections, PosedPerson
from workers.serve.stage import ModelStageReplica


@serve.deployment
class PoseResidual(ModelStageReplica):
    stage_name = "residual"
    part = "prn"  # built from the checkpoint's prn part alone: no backbone weights, no torchvision

    @staticmethod
    def make_stage(pipeline: Any) -> Any:
        return pipeline.residual

    def _batched_method(self) -> Any:
        return self._assign

    async def __call__(self, detections: Detections, version: str) -> tuple[str, list[PosedPerson]]:
        """One image's detections -> its persons, with the model version the backbone used."""
        return self._unwrap(await self._assign((version, detections)))

    @serve.batch
    async def _assign(self, requests: list[tuple[str | None, Detections]]) -> list[Any]:
        return await self._run_batch(requests)
