"""Activity classifier: a person's keypoints → activity label (MLP as in the seed).

Input encoding (``encode_poses``): each joint's x, y normalised to [0, 1] within the person box
(clipped), in COCO order [x0, y0, x1, y1, …] (2×17), with joints not found (score 0) set to 0 and a
17-dim visibility mask (1 = found) concatenated, so "missing" is explicit rather than a corner of the box:
51 inputs. Layers: Dense 3072 → Dense 128 → Dense n (softmax), each hidden Dense followed by ReLU,
BatchNorm and Dropout(0.3).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from model.config import ModelConfig
from model.predictions import NUM_KEYPOINTS, PersonPrediction, PosedPerson


def encode_poses(keypoints: torch.Tensor, boxes: torch.Tensor) -> torch.Tensor:
    """keypoints (N, 17, 3) x, y, score; boxes (N, 4) → features (N, 51)."""
    if (
        keypoints.ndim != 3
        or keypoints.shape[1:] != (NUM_KEYPOINTS, 3)
        or boxes.shape != (keypoints.shape[0], 4)
    ):
        raise ValueError(
            f"need keypoints (N, 17, 3) and boxes (N, 4), got {tuple(keypoints.shape)}, {tuple(boxes.shape)}"
        )
    origin = boxes[:, None, :2]
    size = (boxes[:, None, 2:] - boxes[:, None, :2]).clamp(min=1e-3)
    visible = (keypoints[..., 2] > 0).to(keypoints.dtype)  # (N, 17)
    normalised = ((keypoints[..., :2] - origin) / size).clamp(0, 1) * visible[..., None]
    return torch.cat([normalised.flatten(1), visible], dim=1)


class ActivityClassifier(nn.Module):
    """The seed's MLP. ``input_width`` and ``batchnorm`` exist for the activity study
    (``model.evaluation.activity_study``); the served classifier keeps the defaults (51 inputs, BatchNorm),
    so its layer indices, and with them the checkpoint's keys, are unchanged."""

    def __init__(
        self,
        config: ModelConfig,
        num_keypoints: int = NUM_KEYPOINTS,
        input_width: int | None = None,
        batchnorm: bool = True,
    ) -> None:
        super().__init__()
        if input_width is not None and input_width < 1:
            raise ValueError(f"input_width must be positive, got {input_width}")
        self.activities = tuple(config.activities)
        layers: list[nn.Module] = []
        width = input_width or 3 * num_keypoints
        for hidden in config.activity_hidden:
            layers += [nn.Linear(width, hidden), nn.ReLU(inplace=True)]
            if batchnorm:
                layers.append(nn.BatchNorm1d(hidden))
            layers.append(nn.Dropout(config.activity_dropout))
            width = hidden
        layers.append(nn.Linear(width, len(self.activities)))
        self.mlp = nn.Sequential(*layers)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        """features (N, 51) → logits (N, n_classes); softmax gives the class probabilities."""
        return self.mlp(features)

    def loss(self, logits: torch.Tensor, labels: torch.Tensor) -> dict[str, torch.Tensor]:
        """Categorical cross-entropy; labels (N,) class indices into ``activities``."""
        return {"activity": F.cross_entropy(logits, labels)}

    @torch.no_grad()
    def classify(self, persons: Sequence[Sequence[PosedPerson]]) -> list[list[PersonPrediction]]:
        """All persons of all images in one forward; returns the same nesting."""
        flat = [person for image in persons for person in image]
        if not flat:
            return [[] for _ in persons]
        device = self.mlp[0].weight.device
        keypoints = torch.from_numpy(np.stack([p.keypoints for p in flat]).astype(np.float32)).to(device)
        boxes = torch.tensor([p.bbox for p in flat], dtype=torch.float32, device=device)
        probabilities = torch.softmax(self(encode_poses(keypoints, boxes)), dim=1).cpu().numpy()
        results: list[list[PersonPrediction]] = []
        index = 0
        for image in persons:
            row = []
            for person in image:
                probs = probabilities[index]
                index += 1
                row.append(
                    PersonPrediction(
                        bbox=person.bbox,
                        score=person.score,
                        keypoints=person.keypoints,
                        activity=self.activities[int(probs.argmax())],
                        activity_scores={
                            name: float(p) for name, p in zip(self.activities, probs, strict=True)
                        },
                    )
                )
            results.append(row)
        return results
