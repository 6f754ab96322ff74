"""Where a training run reports its per-epoch metrics and checkpoints, and finds the one to resume from.

The trainers (``model/train/trainers.py``) are one loop for one process and for N Ray Train workers; they
talk to a ``TrainingReporter`` only. ``LocalReporter`` (here) keeps the checkpoints in a local folder;
``workers/train_ray.py`` has the Ray Train one (``ray.train.report`` / ``ray.train.get_checkpoint``), so
``model/`` needs no ray import.

A run checkpoint is a folder ``<storage>/<trainer>/checkpoint_epoch_NNNNNN/`` (the same name under both
reporters) holding ``state.pt`` — epoch, step, history, optimizer, scheduler, gradient scaler and the
trained part's weights — and, where the reporter ships the network (Ray: the driver may be on another
machine), ``model.pt`` in the single-file format ``posestream infer``/``serve`` load.
"""

from __future__ import annotations

import contextlib
import re
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Protocol

import structlog

log = structlog.get_logger()

STATE_FILE = "state.pt"
MODEL_FILE = "model.pt"
CHECKPOINT_PATTERN = re.compile(r"^checkpoint_epoch_(\d{6})$")


def checkpoint_dir_name(epoch: int) -> str:
    return f"checkpoint_epoch_{epoch:06d}"


def is_uri(storage: str | Path) -> bool:
    return "://" in str(storage)


class TrainingReporter(Protocol):
    """What the training loop needs from its surroundings (one instance per training process)."""

    # True: each checkpoint carries the whole network (model.pt) for a driver elsewhere to write the final
    # checkpoint from; False: the loop updates the --checkpoint file in place after every epoch.
    ships_model: bool

    def latest_checkpoint(self) -> contextlib.AbstractContextManager[Path | None]:
        """The folder of the run's latest checkpoint (None: a fresh run), readable inside the context."""
        ...

    def report(self, metrics: dict[str, float], epoch: int, write: Callable[[Path], None] | None) -> None:
        """Publish one epoch. Every process calls it once per epoch (a barrier under Ray Train); the one
        that writes the checkpoint passes ``write``, which fills the folder it is given."""
        ...


class LocalReporter:
    """Checkpoints in ``<storage>/<trainer>/`` on this machine; the newest ``keep`` are kept."""

    ships_model = False

    def __init__(self, storage: str | Path, trainer: str, fresh: bool = False, keep: int = 2) -> None:
        if is_uri(storage):
            raise ValueError(
                f"--storage {storage}: a URI needs Ray Train (give --num-workers N); a local run takes a path"
            )
        if keep < 1:
            raise ValueError(f"keep must be at least 1, not {keep}")
        self.run_dir = Path(storage) / trainer
        self.keep = keep
        if fresh and self.run_dir.exists():
            log.info("--fresh: removing the previous run's checkpoints", run_dir=str(self.run_dir))
            shutil.rmtree(self.run_dir)

    def checkpoints(self) -> list[Path]:
        """Complete checkpoint folders, oldest first (a folder appears only once fully written)."""
        if not self.run_dir.is_dir():
            return []
        found = [
            (int(match.group(1)), path)
            for path in self.run_dir.iterdir()
            if (match := CHECKPOINT_PATTERN.match(path.name)) and (path / STATE_FILE).is_file()
        ]
        return [path for _, path in sorted(found)]

    @contextlib.contextmanager
    def latest_checkpoint(self) -> Iterator[Path | None]:
        found = self.checkpoints()
        yield found[-1] if found else None

    def report(self, metrics: dict[str, float], epoch: int, write: Callable[[Path], None] | None) -> None:
        if write is None:
            return
        target = self.run_dir / checkpoint_dir_name(epoch)
        staging = self.run_dir / f".staging_{checkpoint_dir_name(epoch)}"
        shutil.rmtree(staging, ignore_errors=True)  # a run killed while writing leaves a torn one
        staging.mkdir(parents=True)
        write(staging)
        if target.exists():  # the same epoch again (its run was stopped after the rename): replace
            shutil.rmtree(target)
        staging.rename(target)  # atomic: a reader sees the previous epoch's or this one, never half
        for old in self.checkpoints()[: -self.keep]:
            shutil.rmtree(old, ignore_errors=True)
