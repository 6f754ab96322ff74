"""What the four trainers share: model loading, resume state, progress bars, loss curves, checkpoint writes.

After every epoch the trained part goes into the one checkpoint file (``model.checkpoint``, the format
``infer``/``serve`` load) and a run checkpoint — epoch, step, history, optimizer, scheduler, gradient
scaler, the part's weights — goes to the reporter (``model/train/reporting.py``): a folder of this machine
(``--storage``, default ``--out``) or Ray Train's storage. A run resumes from its latest run checkpoint on
its own (``--fresh`` starts over), so a run stopped anywhere continues from its last completed epoch.
"""

from __future__ import annotations

import json
import random
import shutil
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
from model.train.distributed import mean_across_workers, replicas_identical, world
from model.train.precision import MixedPrecision
from model.train.reporting import MODEL_FILE, STATE_FILE, LocalReporter, TrainingReporter

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
    set_sampler_epoch(epoch, *loaders)


def set_sampler_epoch(epoch: int, *loaders: Any) -> None:
    """A distributed sampler's shuffle for ``epoch`` (without it every epoch repeats the first's order)."""
    for loader in loaders:
        sampler = getattr(loader, "sampler", None)
        if hasattr(sampler, "set_epoch"):
            sampler.set_epoch(epoch)


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
    # this process's epochs: (images, seconds) of each epoch's training steps, data loading included
    throughput: list[tuple[int, float]] = field(default_factory=list)


class Run:
    """One trainer's run: resume bookkeeping, curves, checkpoint writes (rank 0 writes, all report)."""

    def __init__(
        self, trainer: str, config: TrainConfig, model: MultiPoseNet, reporter: TrainingReporter | None = None
    ) -> None:
        self.trainer = trainer
        self.part = PART_OF_TRAINER[trainer]
        self.config = config
        self.model = model
        self.device = resolve_device(config.device)
        self.rank, self.world_size = world()
        self.precision = MixedPrecision(config.precision, self.device)
        self.out = Path(config.out)
        if self.rank == 0:
            self.out.mkdir(parents=True, exist_ok=True)
        self.reporter = reporter or LocalReporter(config.storage or self.out, trainer, fresh=config.fresh)
        self.state = RunState()

    def _saved_state(self) -> tuple[dict[str, Any] | None, str]:
        with self.reporter.latest_checkpoint() as directory:
            if directory is not None:
                path = directory / STATE_FILE
                return torch.load(path, map_location="cpu", weights_only=True), str(path)
        # runs started before the run checkpoints kept OUT/<trainer>.resume.pt (same keys, no scaler):
        # read once so such a run still continues; nothing writes that file any more
        legacy = self.out / f"{self.trainer}.resume.pt"
        if not self.config.fresh and legacy.is_file():
            return torch.load(legacy, map_location="cpu", weights_only=True), str(legacy)
        return None, ""

    def restore(self, optimizer: torch.optim.Optimizer, scheduler: Any | None = None) -> None:
        """Continue from the latest run checkpoint when there is one: the part's weights, optimizer,
        scheduler and scaler state, epoch and history."""
        saved, source = self._saved_state()
        if saved is None:
            return
        if saved.get("trainer") != self.trainer:
            raise ValueError(f"{source} belongs to trainer {saved.get('trainer')!r}, not {self.trainer!r}")
        self.model.load_part_state_dict(self.part, saved["part_state"])
        optimizer.load_state_dict(saved["optimizer"])
        if scheduler is not None and saved.get("scheduler") is not None:
            scheduler.load_state_dict(saved["scheduler"])
        self.precision.load_state_dict(saved.get("scaler"))
        self.state = RunState(int(saved["epoch"]), int(saved["step"]), list(saved["history"]))
        log.info("resumed", trainer=self.trainer, epoch=self.state.epoch, step=self.state.step, source=source)

    def end_epoch(
        self, metrics: dict[str, float], optimizer: torch.optim.Optimizer, scheduler: Any | None = None
    ) -> None:
        """Record the epoch, write the part into the checkpoint, report the run checkpoint, the curves."""
        metrics = mean_across_workers(metrics)
        if self.world_size > 1:
            metrics["replicas_identical"] = float(replicas_identical(self.model))
        self.state.epoch += 1
        self.state.history.append(
            {"epoch": float(self.state.epoch), **{k: float(v) for k, v in metrics.items()}}
        )
        part_state = {k: v.detach().cpu().clone() for k, v in self.model.part_state_dict(self.part).items()}
        self.model.trained_parts.add(self.part)
        extra = {f"{self.trainer}_epochs": self.state.epoch}
        if self.rank == 0 and not self.reporter.ships_model:
            self._write_network(self.config.checkpoint, part_state, extra)
        payload = {
            "trainer": self.trainer,
            "epoch": self.state.epoch,
            "step": self.state.step,
            "history": self.state.history,
            "optimizer": optimizer.state_dict(),
            "scheduler": scheduler.state_dict() if scheduler is not None else None,
            "scaler": self.precision.state_dict(),
            "part_state": part_state,
        }

        def write(directory: Path) -> None:
            atomic_save(payload, directory / STATE_FILE)
            if self.reporter.ships_model:  # the network as infer/serve load it, for the driver to keep
                if self.config.checkpoint.is_file():
                    shutil.copyfile(self.config.checkpoint, directory / MODEL_FILE)
                self._write_network(directory / MODEL_FILE, part_state, extra)

        # throughput is reported and logged, never kept in the history (a resumed run's history must
        # equal the uninterrupted run's)
        speed = self._images_per_s()
        reported = {"epoch": float(self.state.epoch), "step": float(self.state.step), **metrics, **speed}
        self.reporter.report(reported, self.state.epoch, write if self.rank == 0 else None)
        if self.rank == 0:
            write_history(self.state.history, self.out, self.trainer)
            with (self.out / f"{self.trainer}.epochs.jsonl").open("a") as log_file:  # `tail -f` to watch
                log_file.write(json.dumps({**reported, "time": time.time()}) + "\n")
        log.info(
            "epoch done", trainer=self.trainer, epoch=self.state.epoch, rank=self.rank, **metrics, **speed
        )

    def _images_per_s(self) -> dict[str, float]:
        """All workers' training images per second in the epoch just done (each worker's share summed)."""
        if not self.state.throughput:
            return {}
        images, seconds = self.state.throughput[-1]
        mean = mean_across_workers({"images_per_s": images / max(seconds, 1e-9)})
        return {"images_per_s": mean["images_per_s"] * self.world_size}

    def _write_network(self, path: Path, part_state: dict[str, torch.Tensor], extra: dict[str, Any]) -> None:
        update_checkpoint_part(
            path, self.part, self.model if not path.exists() else part_state, trained=True, extra=extra
        )


def write_history(history: list[dict[str, float]], out: Path, trainer: str) -> None:
    """``OUT/<trainer>.history.json`` and the loss curves ``OUT/<trainer>_loss.png``."""
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{trainer}.history.json").write_text(json.dumps(history, indent=1))
    save_curves(history, out / f"{trainer}_loss.png", title=f"{trainer} training")


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
    throughput: list[tuple[int, float]] | None = None,
) -> dict[str, float]:
    """Run ``step_fn`` over the batches with a live-loss progress bar; returns the mean of each metric
    (and appends the epoch's (images, seconds) to ``throughput``)."""
    sums: dict[str, float] = {}
    count = images = 0
    started = time.perf_counter()
    bar = progress(batches, total, description, enabled)
    for batch in bar:
        images += batch_images(batch)
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
    if throughput is not None:
        throughput.append((images, time.perf_counter() - started))
    return {key: value / count for key, value in sums.items()}


def batch_images(batch: Any) -> int:
    """Samples in a batch: a pose batch's images, or the first tensor of a (inputs, targets) pair."""
    first = batch["images"] if isinstance(batch, dict) else batch[0]
    return int(first.shape[0])


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
