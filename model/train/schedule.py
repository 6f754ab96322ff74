"""Learning-rate schedules of the trainers.

Keypoints: the seed updates its initial 4e-5 "according to Eq. 5", an equation lost from the text. This
is a reconstruction: the step policy of the pose-training code MultiPoseNet descends from (Caffe's
"step" as in OpenPose/CPM), ``lr_n = lr_0 · γ^⌊(n − 1)/s⌋`` for epoch ``n ≥ 1``, γ = 0.333 and the step
``s`` in epochs configurable.
"""

from __future__ import annotations

import torch


def step_decay_lr(epoch: int, base_lr: float = 4e-5, gamma: float = 0.333, step_epochs: int = 10) -> float:
    """lr of 1-based ``epoch``: ``base_lr · gamma^⌊(epoch − 1)/step_epochs⌋``."""
    if epoch < 1:
        raise ValueError(f"epochs count from 1, got {epoch}")
    if step_epochs < 1:
        raise ValueError(f"step_epochs must be ≥ 1, got {step_epochs}")
    return base_lr * gamma ** ((epoch - 1) // step_epochs)


def set_lr(optimizer: torch.optim.Optimizer, lr: float) -> None:
    for group in optimizer.param_groups:
        group["lr"] = lr


def warmup_factor(iteration: int, warmup_iters: int, start_factor: float = 1.0 / 3) -> float:
    """Linear warm-up (Detectron's RetinaNet: lr/3 → lr over the first iterations)."""
    if warmup_iters <= 0 or iteration >= warmup_iters:
        return 1.0
    alpha = iteration / warmup_iters
    return start_factor * (1 - alpha) + alpha


def multistep_factor(epoch: int, total_epochs: int, milestones: tuple[float, ...] = (2 / 3, 8 / 9)) -> float:
    """RetinaNet's ÷10 drops at 60k and 80k of 90k iterations, expressed as fractions of the epochs."""
    drops = sum(1 for fraction in milestones if epoch > max(1, round(fraction * total_epochs)))
    return 0.1**drops
