"""A scripted FramePipeline for stream tests: each frame's image spells its index, and the pipeline answers
with the persons its script names for that index (deterministic people that move and change activity)."""

from __future__ import annotations

import asyncio

import cv2
import numpy as np

from model.predictions import PersonPrediction

ACTIVITIES = ("walking", "running", "sitting", "standing")


def numbered_image(index: int, width: int = 64, height: int = 64) -> bytes:
    """A PNG whose first pixel spells the frame's index (lossless, so the pipeline can read it back)."""
    pixels = np.full((height, width, 3), 90, np.uint8)
    pixels[0, 0] = (index % 256, index // 256, 0)
    return cv2.imencode(".png", pixels)[1].tobytes()


def person(x: float, activity: str, y: float = 100.0) -> PersonPrediction:
    """A standing-height figure whose box starts at x, with joints spread over the box."""
    keypoints = np.zeros((17, 3), np.float32)
    keypoints[:, 0] = x + 10 + np.arange(17) % 3 * 10
    keypoints[:, 1] = y + np.arange(17) * 10
    keypoints[:, 2] = 0.8
    scores = {name: (0.7 if name == activity else 0.1) for name in ACTIVITIES}
    return PersonPrediction((x, y, x + 40, y + 170), 0.9, keypoints, activity, scores)


class ScriptedPeople:
    """The FramePipeline interface answering each frame with the persons its script names (by index)."""

    model_version = "scripted-1"

    def __init__(self, script: dict[int, list[PersonPrediction]], gate: asyncio.Event | None = None):
        self.script = script
        self.gate = gate
        self.seen: list[int] = []

    async def __call__(self, images: list[np.ndarray]) -> list[list[PersonPrediction]]:
        indices = [int(image[0, 0, 0]) + 256 * int(image[0, 0, 1]) for image in images]
        self.seen += indices
        if self.gate is not None and any(i >= 3 for i in indices):
            await self.gate.wait()
        return [self.script[i] for i in indices]
