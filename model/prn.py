"""Pose Residual Network: assigns each joint's heatmap peaks to the detected persons.

For each person box (enlarged by ``prn_box_enlarge``) every joint's peaks inside it are re-rendered as small
Gaussians on a ``prn_grid`` (56×36) grid, 17 channels. A residual MLP (as in the MultiPoseNet code:
flatten → ``prn_depth`` hidden layers of ``prn_hidden`` units with ReLU + dropout → dense back to the grid
size with ReLU, added to its input) ends with a softmax per joint over the grid. Each candidate peak is
scored by the output summed in a (2w+1)² window around it times the peak's score; the best one is the
person's joint. ``baseline`` is the untrained fallback: the strongest peak near the box centre.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from model.config import ModelConfig
from model.decode import render_gaussians
from model.predictions import NUM_KEYPOINTS, Detections, PosedPerson


def enlarge_boxes(boxes: torch.Tensor, fraction: float) -> torch.Tensor:
    """(N, 4) boxes grown by ``fraction`` of their width/height, same centre."""
    centre = (boxes[:, :2] + boxes[:, 2:]) / 2
    half = (boxes[:, 2:] - boxes[:, :2]).clamp(min=1.0) * (1 + fraction) / 2
    return torch.cat([centre - half, centre + half], dim=1)


def peaks_on_grid(
    peaks: torch.Tensor, boxes: torch.Tensor, grid_hw: tuple[int, int]
) -> tuple[torch.Tensor, torch.Tensor]:
    """peaks (J, K, 3) image px, boxes (N, 4) (already enlarged) → grid coordinates (N, J, K, 2) and
    a mask (N, J, K) of real peaks (score > 0) lying inside each box."""
    grid_h, grid_w = grid_hw
    x1, y1, x2, y2 = (boxes[:, i].view(-1, 1, 1) for i in range(4))
    px, py, score = peaks[None, ..., 0], peaks[None, ..., 1], peaks[None, ..., 2]
    gx = (px - x1) / (x2 - x1) * grid_w - 0.5
    gy = (py - y1) / (y2 - y1) * grid_h - 0.5
    inside = (score > 0) & (px >= x1) & (px <= x2) & (py >= y1) & (py <= y2)
    return torch.stack([gx, gy], dim=-1), inside


def render_prn_input(peaks: torch.Tensor, boxes: torch.Tensor, config: ModelConfig) -> torch.Tensor:
    """The PRN's input (N, J, grid_h, grid_w): every joint's peaks inside each (enlarged) box as Gaussians
    of peak 1. Trainers render the target the same way from one person's own keypoints."""
    grid_h, grid_w = config.prn_grid
    centres, inside = peaks_on_grid(peaks, boxes, config.prn_grid)
    return render_gaussians(centres, inside, grid_h, grid_w, config.prn_sigma)


def as_distribution(grids: torch.Tensor) -> torch.Tensor:
    """(N, J, H, W) grids scaled so that each joint's plane sums to 1 (all-zero planes stay zero)."""
    sums = grids.flatten(2).sum(-1)[..., None, None]  # (N, J, 1, 1)
    return torch.where(sums > 0, grids / sums.clamp(min=1e-12), torch.zeros_like(grids))


class PoseResidualNetwork(nn.Module):
    def __init__(self, config: ModelConfig, num_keypoints: int = NUM_KEYPOINTS) -> None:
        super().__init__()
        self.config = config
        self.num_keypoints = num_keypoints
        grid_h, grid_w = config.prn_grid
        size = num_keypoints * grid_h * grid_w
        layers: list[nn.Module] = []
        width = size
        for _ in range(config.prn_depth):
            layers += [
                nn.Linear(width, config.prn_hidden),
                nn.ReLU(inplace=True),
                nn.Dropout(config.prn_dropout),
            ]
            width = config.prn_hidden
        self.hidden = nn.Sequential(*layers)
        self.output = nn.Linear(width, size)

    def forward(self, grids: torch.Tensor) -> torch.Tensor:
        """grids (N, J, H, W) → per-joint probabilities over the grid (N, J, H, W), each joint sums to 1."""
        if grids.ndim != 4 or grids.shape[1:] != (self.num_keypoints, *self.config.prn_grid):
            raise ValueError(
                f"PRN input must be (N, {self.num_keypoints}, {self.config.prn_grid[0]}, "
                f"{self.config.prn_grid[1]}), got {tuple(grids.shape)}"
            )
        flat = grids.flatten(1)  # (N, J·H·W)
        residual = F.relu(self.output(self.hidden(flat)))
        logits = (residual + flat).view(grids.shape[0], self.num_keypoints, -1)
        return torch.softmax(logits, dim=-1).view_as(grids)

    def loss(self, output: torch.Tensor, target: torch.Tensor) -> dict[str, torch.Tensor]:
        """Binary cross-entropy (the seed's loss) between the output and the person's own-joints grid.

        The output is a distribution per joint, so the target is made one too (``as_distribution``): BCE
        against Gaussians of peak 1 (sum ≈ 2πσ² ≠ 1) has its optimum on a flattened output that loses the
        peak. Joints the person has no point for inside the box (all-zero target) are left out."""
        if output.shape != target.shape:
            raise ValueError(f"PRN target {tuple(target.shape)} does not match output {tuple(output.shape)}")
        target = as_distribution(target)
        present = target.flatten(2).sum(-1) > 0  # (N, J)
        per_cell = F.binary_cross_entropy(output.clamp(1e-7, 1 - 1e-7), target, reduction="none")
        per_joint = per_cell.flatten(2).mean(-1)  # (N, J)
        if not bool(present.any()):
            return {"prn": per_joint.sum() * 0.0}
        return {"prn": per_joint[present].mean()}

    def candidate_scores(
        self, output: torch.Tensor, centres: torch.Tensor, inside: torch.Tensor, peak_scores: torch.Tensor
    ) -> torch.Tensor:
        """Σ of the output in a (2w+1)² window around each candidate × its peak score → (N, J, K);
        −1 where the candidate is not inside the box."""
        window = 2 * self.config.prn_window + 1
        summed = F.avg_pool2d(
            output, window, stride=1, padding=self.config.prn_window, count_include_pad=True
        )
        summed = summed * window * window
        grid_h, grid_w = self.config.prn_grid
        ix = centres[..., 0].round().long().clamp(0, grid_w - 1)
        iy = centres[..., 1].round().long().clamp(0, grid_h - 1)
        at_peak = summed.flatten(2).gather(2, (iy * grid_w + ix))  # (N, J, K)
        scores = at_peak * peak_scores
        return torch.where(inside, scores, torch.full_like(scores, -1.0))

    @staticmethod
    def baseline_scores(boxes: torch.Tensor, peaks: torch.Tensor, inside: torch.Tensor) -> torch.Tensor:
        """Untrained fallback: peak score × exp(−½‖(p − c) / (size / 2)‖²) → prefers strong peaks near the
        box centre c; −1 outside the box. (N, J, K)."""
        centre = ((boxes[:, :2] + boxes[:, 2:]) / 2)[:, None, None, :]
        half = ((boxes[:, 2:] - boxes[:, :2]) / 2)[:, None, None, :]
        offset = (peaks[None, ..., :2] - centre) / half
        scores = peaks[None, ..., 2] * torch.exp(-0.5 * (offset**2).sum(-1))
        return torch.where(inside, scores, torch.full_like(scores, -1.0))

    @torch.no_grad()
    def assign(self, detections: Sequence[Detections], use_network: bool = True) -> list[list[PosedPerson]]:
        """Per image, one keypoint per joint for every detected person (score 0 when no peak is inside)."""
        device = self.output.weight.device
        results: list[list[PosedPerson]] = []
        for detection in detections:
            if detection.num_persons == 0:
                results.append([])
                continue
            boxes = torch.from_numpy(np.asarray(detection.boxes, dtype=np.float32)).to(device)
            peaks = torch.from_numpy(np.asarray(detection.peaks, dtype=np.float32)).to(device)  # (J, K, 3)
            grid_boxes = enlarge_boxes(boxes, self.config.prn_box_enlarge)
            centres, inside = peaks_on_grid(peaks, grid_boxes, self.config.prn_grid)
            if use_network:
                grids = render_gaussians(centres, inside, *self.config.prn_grid, self.config.prn_sigma)
                scores = self.candidate_scores(self(grids), centres, inside, peaks[None, ..., 2])
            else:
                scores = self.baseline_scores(grid_boxes, peaks, inside)
            best = scores.argmax(dim=2)  # (N, J)
            found = scores.gather(2, best[..., None]).squeeze(2) >= 0
            chosen = peaks[torch.arange(peaks.shape[0], device=device)[None, :], best]  # (N, J, 3)
            chosen = torch.where(found[..., None], chosen, torch.zeros_like(chosen)).cpu().numpy()
            results.append(
                [
                    PosedPerson(
                        bbox=tuple(float(v) for v in detection.boxes[n]),
                        score=float(detection.scores[n]),
                        keypoints=chosen[n].astype(np.float32),
                    )
                    for n in range(detection.num_persons)
                ]
            )
        return results
