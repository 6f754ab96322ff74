"""False persons on frames without people: the generator's backgrounds (clutter, floors, photos) and noise.

A detector that fires on texture reports people to every subscriber of an empty camera. This counts the
persons the pipeline reports at its display threshold (what ``infer``/``serve`` publish) on frames that
hold nobody: half of them drawn backgrounds of the synthetic generator (the very scenes people are pasted
into, so the detector cannot have learned "any background means a person"), half uniform and Gaussian
noise.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from model.data.backgrounds import empty_frame


@dataclass(frozen=True)
class EmptyFrameReport:
    frames: int
    false_persons: int
    frames_with_false_persons: int
    max_score: float  # highest person score reported on any empty frame (0 when none)

    @property
    def false_persons_per_frame(self) -> float:
        return self.false_persons / max(self.frames, 1)

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "false_persons_per_frame": self.false_persons_per_frame}


def empty_frames(count: int, seed: int, size: tuple[int, int] = (480, 480)) -> list[np.ndarray]:
    """``count`` BGR uint8 frames without people: backgrounds, then uniform and Gaussian noise."""
    if count < 1:
        raise ValueError(f"count must be at least 1, got {count}")
    height, width = size
    rng = np.random.default_rng(seed)
    return [empty_frame(rng, width, height, index % 4) for index in range(count)]


def evaluate_empty_frames(
    pipeline: Any, count: int = 40, seed: int = 0, size: tuple[int, int] = (480, 480), batch_size: int = 4
) -> EmptyFrameReport:
    """Persons ``pipeline`` (anything with ``predict(list of BGR images)``) reports on empty frames."""
    frames = empty_frames(count, seed, size)
    persons, frames_hit, max_score = 0, 0, 0.0
    for start in range(0, len(frames), batch_size):
        for found in pipeline.predict(frames[start : start + batch_size]):
            persons += len(found)
            frames_hit += bool(found)
            max_score = max([max_score, *(float(person.score) for person in found)])
    return EmptyFrameReport(count, persons, frames_hit, round(max_score, 4))
