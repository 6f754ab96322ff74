"""ActivityClassifier: keypoints normalised in their box -> activity label and scores. CPU, batched."""

from __future__ import annotations

from typing import Any

from ray import serve

from model.predictions import PersonPrediction, PosedPerson
from workers.serve.stage import ModelStageReplica


@serve.deployment
class ActivityClassifier(ModelStageReplica):
    stage_name = "activity"
    part = "activity"  # built from the checkpoint's activity part alone: no backbone weights, no torchvision

    @staticmethod
    def make_stage(pipeline: Any) -> Any:
        return pipeline.activity

    def _batched_method(self) -> Any:
        return self._classify

    async def __call__(self, persons: list[PosedPerson], version: str) -> tuple[str, list[PersonPrediction]]:
        """One image's persons -> their predictions, with the model version the backbone used."""
        return self._unwrap(await self._classify((version, persons)))

    @serve.batch
    async def _classify(self, requests: list[tuple[str | None, list[PosedPerson]]]) -> list[Any]:
        return await self._run_batch(requests)
