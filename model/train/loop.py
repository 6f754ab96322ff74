"""What the four trainers share: model loading, resume state, progress bars, loss curves, checkpoint writes.

Weights go into the one checkpoint file (``model.checkpoint.update_checkpoint_part``) after every epoch;
the optimizer/scheduler state, epoch counter and loss history go to ``OUT/<part>.resume.pt`` (kept out of
the checkpoint so a shipped checkpoint stays small). ``--resume`` reads both.
"""

from __future__ import annotations

import json
import random
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import structlog
import torch

from model.checkpoint import atomic_save, load_checkpoint, update_checkpoint_part
from model.config import ModelConfig, resolve_device
from model.multiposenet import MultiPoseNet
from model.pretrained import initialise_backbone
from model.train.config import PRESET_BACKBONE_WEIGHTS, TrainConfig

log = structlog.get_logger()
HEARTBEAT_STEPS = 50  # without a progress bar, a log line every this many steps

# CLI trainer name → checkpoint part name
PART_OF_TRAINER = {"keypoints": "keypoint", "detection": "detection", "prn": "prn", "activity": "activity"}


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def seed_epoch(config: TrainConfig, epoch: int, *loaders: Any) -> None:
    """Every epoch's randomness (shuffle, augmentation, dropout) is a function of (seed, epoch) alone, so a
    run resumed after epoch ``n`` continues exactly as the uninterrupted run would have."""
    epoch_seed = config.seed * 100_003 + epoch
    seed_everything(epoch_seed)
    for loader in loaders:
        generator = getattr(loader, "generator", None)
        if generator is not None:
            generator.manual_seed(epoch_seed)


def load_or_build_model(config: TrainConfig) -> MultiPoseNet:
    """The checkpoint's network when the file exists, else a fresh one of ``config.preset``."""
    if config.checkpoint.is_file():
        model, meta = load_checkpoint(config.checkpoint)
        log.info(
            "training from checkpoint", checkpoint=str(config.checkpoint), trained_parts=meta["trained_parts"]
        )
        return model
    overrides: dict[str, Any] = {}
    if config.input_size is not None:
        side = config.input_size - config.input_size % 32 or 32
        overrides["input_size"] = (side, side)
    model = MultiPoseNet(ModelConfig.preset(config.preset, **overrides))
    weights = config.backbone_weights or PRESET_BACKBONE_WEIGHTS[config.preset]
    loaded = initialise_backbone(model.backbone, weights)
    log.info(
        "no checkpoint yet: building a fresh network",
        checkpoint=str(config.checkpoint),
        preset=config.preset,
        backbone_weights=loaded.source if loaded else "random",
        tensors_loaded=loaded.tensors if loaded else 0,
    )
    return model


def crop_size(config: TrainConfig, model: MultiPoseNet) -> tuple[int, int]:
    """The training crop: --crop-side (rounded down to a multiple of 32, at most the canvas) or the
    model's canvas."""
    canvas = tuple(model.config.input_size)
    if config.crop_side is None:
        return canvas
    side = max(32, config.crop_side - config.crop_side % 32)
    return min(side, canvas[0]), min(side, canvas[1])


@dataclass
class RunState:
    """Everything needed to continue a run: epochs done, optimizer/scheduler state, per-epoch history."""

    epoch: int = 0  # epochs completed
    step: int = 0  # optimizer steps taken
    history: list[dict[str, float]] = field(default_factory=list)
    step_losses: list[float] = field(default_factory=list)  # this process's steps only (not resumed)


class Run:
    """One trainer's run: resume bookkeeping, curves, checkpoint writes."""

    def __init__(self, trainer: str, config: TrainConfig, model: MultiPoseNet) -> None:
        self.trainer = trainer
        self.part = PART_OF_TRAINER[trainer]
        self.config = config
        self.model = model
        self.device = resolve_device(config.device)
        self.out = Path(config.out)
        self.out.mkdir(parents=True, exist_ok=True)
        self.resume_path = self.out / f"{trainer}.resume.pt"
        self.state = RunState()

    def restore(self, optimizer: torch.optim.Optimizer, scheduler: Any | None = None) -> None:
        """With ``--resume``: load the part's weights, optimizer/scheduler state, epoch and history."""
        if not self.config.resume:
            return
        if not self.resume_path.is_file():
            raise ValueError(f"--resume given but {self.resume_path} does not exist")
        saved = torch.load(self.resume_path, map_location="cpu", weights_only=True)
        if saved.get("trainer") != self.trainer:
            raise ValueError(
                f"{self.resume_path} belongs to trainer {saved.get('trainer')!r}, not {self.trainer!r}"
            )
        self.model.load_part_state_dict(self.part, saved["part_state"])
        optimizer.load_state_dict(saved["optimizer"])
        if scheduler is not None and saved.get("scheduler") is not None:
            scheduler.load_state_dict(saved["scheduler"])
        self.state = RunState(int(saved["epoch"]), int(saved["step"]), list(saved["history"]))
        log.info("resumed", trainer=self.trainer, epoch=self.state.epoch, step=self.state.step)

    def end_epoch(
        self, metrics: dict[str, float], optimizer: torch.optim.Optimizer, scheduler: Any | None = None
    ) -> None:
        """Record the epoch, write the part into the checkpoint, the resume state and the curves."""
        self.state.epoch += 1
        self.state.history.append(
            {"epoch": float(self.state.epoch), **{k: float(v) for k, v in metrics.items()}}
        )
        part_state = {k: v.detach().cpu().clone() for k, v in self.model.part_state_dict(self.part).items()}
        self.model.trained_parts.add(self.part)
        update_checkpoint_part(
            self.config.checkpoint,
            self.part,
            self.model if not self.config.checkpoint.exists() else part_state,
            trained=True,
            extra={f"{self.trainer}_epochs": self.state.epoch},
        )
        atomic_save(  # a run killed while writing keeps the previous epoch's state, not a torn file
            {
                "trainer": self.trainer,
                "epoch": self.state.epoch,
                "step": self.state.step,
                "history": self.state.history,
                "optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict() if scheduler is not None else None,
                "part_state": part_state,
            },
            self.resume_path,
        )
        (self.out / f"{self.trainer}.history.json").write_text(json.dumps(self.state.history, indent=1))
        save_curves(
            self.state.history, self.out / f"{self.trainer}_loss.png", title=f"{self.trainer} training"
        )
        log.info("epoch done", trainer=self.trainer, epoch=self.state.epoch, **metrics)


def progress(iterable: Iterable, total: int | None, description: str, enabled: bool):
    from tqdm import tqdm

    return tqdm(
        iterable, total=total, desc=description, unit="batch", disable=not enabled, dynamic_ncols=True
    )


def limited(loader: Iterable, max_steps: int | None) -> Iterable:
    for index, batch in enumerate(loader):
        if max_steps is not None and index >= max_steps:
            return
        yield batch


def run_epoch(
    batches: Iterable,
    total: int,
    step_fn: Callable[[Any], dict[str, float]],
    step_losses: list[float],
    description: str,
    enabled: bool,
) -> dict[str, float]:
    """Run ``step_fn`` over the batches with a live-loss progress bar; returns the mean of each metric."""
    sums: dict[str, float] = {}
    count = 0
    started = time.perf_counter()
    bar = progress(batches, total, description, enabled)
    for batch in bar:
        metrics = step_fn(batch)
        step_losses.append(float(metrics["loss"]))
        count += 1
        for key, value in metrics.items():
            sums[key] = sums.get(key, 0.0) + float(value)
        if not enabled and count % HEARTBEAT_STEPS == 0:  # no bar (a background run): a log line instead
            log.info(
                "training",
                run=description,
                step=f"{count}/{total}",
                s_per_step=round((time.perf_counter() - started) / count, 3),
                **{k: round(v / count, 6) for k, v in sums.items()},
            )
        bar.set_postfix(
            {k: f"{v / count:.4g}" for k, v in sums.items() if k in ("loss", "lr")}
            | {"last": f"{metrics['loss']:.4g}"}
        )
    if count == 0:
        raise ValueError(f"{description}: no batch (empty dataset?)")
    return {key: value / count for key, value in sums.items()}


def save_curves(history: list[dict[str, float]], path: Path, title: str) -> Path:
    """Loss curves per epoch (train and, when present, val), components dashed; lr on a log axis."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    epochs = [row["epoch"] for row in history]
    keys = [k for k in history[-1] if k not in ("epoch", "lr") and all(k in row for row in history)]
    fig, (ax, ax_lr) = plt.subplots(1, 2, figsize=(10, 4))
    for key in keys:
        style = "-" if key in ("loss", "val_loss") else "--"
        ax.plot(epochs, [row[key] for row in history], style, marker="o", markersize=3, label=key)
    ax.set_xlabel("epoch")
    ax.set_ylabel("loss")
    ax.set_title(title)
    ax.legend(fontsize=8)
    if any(row.get("loss", 1) > 0 for row in history):
        ax.set_yscale("log")
    if all("lr" in row for row in history):
        ax_lr.plot(epochs, [row["lr"] for row in history], marker="o", markersize=3)
        ax_lr.set_yscale("log")
    ax_lr.set_xlabel("epoch")
    ax_lr.set_title("learning rate")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path
