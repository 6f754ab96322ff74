"""``posestream train … --num-workers N``: the trainers of ``model/train/trainers.py`` under Ray Train.

``ray.train.torch.TorchTrainer`` starts N workers and torch's process group between them (gloo on CPUs,
nccl on GPUs); each worker runs the very trainer function a 1-process run calls, with a ``RayReporter``
(``model.train.reporting.TrainingReporter``): per-epoch metrics and the run checkpoint go through
``ray.train.report`` to the storage path (a local path, or a URI / shared path every node sees on a
cluster), and ``ray.train.get_checkpoint()`` hands the latest one back when the same command runs again
(same trainer name, same storage: Ray Train's own run restoration). The data split, DDP wrapping and
batch/lr rule are the loop's (``model/train/distributed.py``).

Rank 0 puts the whole network (``model.pt``, the format ``infer``/``serve`` load) in each checkpoint; the
driver copies the latest one to ``--checkpoint`` when the run ends, so it lands on the machine that asked
for it even when rank 0 ran on another node.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import structlog
import torch

from model.train.config import TrainConfig
from model.train.loop import RunState, write_history
from model.train.reporting import MODEL_FILE, STATE_FILE, checkpoint_dir_name, is_uri

log = structlog.get_logger()
KEEP_CHECKPOINTS = 2


@dataclass(frozen=True)
class RayTrainSettings:
    """How many training workers, on what, against which Ray."""

    num_workers: int
    use_gpu: bool = False
    address: str | None = None  # None: the Ray this process already joined, else a new local one
    cpus_per_worker: float = 1.0

    def __post_init__(self) -> None:
        if self.num_workers < 1:
            raise ValueError(f"--num-workers must be at least 1, not {self.num_workers}")
        if self.cpus_per_worker <= 0:  # Ray refuses a worker that reserves nothing
            raise ValueError(f"--cpus-per-worker must be > 0, not {self.cpus_per_worker}")


class RayReporter:
    """The loop's reporter inside a Ray Train worker."""

    ships_model = True

    @contextlib.contextmanager
    def latest_checkpoint(self) -> Iterator[Path | None]:
        import ray.train

        checkpoint = ray.train.get_checkpoint()
        if checkpoint is None:
            yield None
            return
        with checkpoint.as_directory() as directory:  # downloaded first when the storage is remote
            yield Path(directory)

    def report(self, metrics: dict[str, float], epoch: int, write: Callable[[Path], None] | None) -> None:
        import ray.train

        if write is None:  # every worker reports (a barrier); one uploads
            ray.train.report(metrics)
            return
        with tempfile.TemporaryDirectory(prefix="posestream-ckpt-") as directory:
            write(Path(directory))
            ray.train.report(
                metrics,
                checkpoint=ray.train.Checkpoint.from_directory(directory),
                checkpoint_dir_name=checkpoint_dir_name(epoch),
            )


def _train_worker(loop_config: dict[str, Any]) -> None:
    """One Ray Train worker: the trainer function itself, on this worker's device."""
    import ray.train.torch

    from model.train.trainers import TRAINERS

    config: TrainConfig = loop_config["config"]
    device = ray.train.torch.get_device() if loop_config["use_gpu"] else torch.device("cpu")
    if device.type == "cuda":
        torch.cuda.set_device(device)
    config = config.model_copy(update={"device": str(device)})
    TRAINERS[loop_config["trainer"]](config, RayReporter())


def storage_location(config: TrainConfig) -> str:
    """Ray Train's storage_path: a URI as given, a path made absolute (Ray requires it)."""
    storage = config.storage or str(config.out)
    return storage if is_uri(storage) else str(Path(storage).expanduser().resolve())


def _remove_run(storage: str, name: str) -> None:
    """--fresh: the previous run of this trainer (its checkpoints and Ray's snapshot of them) goes."""
    if not is_uri(storage):
        shutil.rmtree(Path(storage) / name, ignore_errors=True)
        return
    import pyarrow.fs

    filesystem, root = pyarrow.fs.FileSystem.from_uri(storage)
    path = f"{root.rstrip('/')}/{name}"
    if filesystem.get_file_info(path).type != pyarrow.fs.FileType.NotFound:
        filesystem.delete_dir(path)


def _keep_final_checkpoint(result: Any, config: TrainConfig, trainer: str) -> RunState:
    """The latest run checkpoint's network → ``--checkpoint`` (atomically); its history → ``--out``."""
    if result.checkpoint is None:
        raise ValueError(f"the {trainer} run reported no checkpoint (storage {result.path})")
    with result.checkpoint.as_directory() as directory:
        saved = torch.load(Path(directory) / STATE_FILE, map_location="cpu", weights_only=True)
        target = Path(config.checkpoint)
        target.parent.mkdir(parents=True, exist_ok=True)
        staging = target.with_name(f".{target.name}.{os.getpid()}.tmp")
        shutil.copyfile(Path(directory) / MODEL_FILE, staging)
        os.replace(staging, target)
    state = RunState(int(saved["epoch"]), int(saved["step"]), list(saved["history"]))
    if state.history:
        write_history(state.history, Path(config.out), trainer)
    return state


def run_ray_training(trainer: str, config: TrainConfig, settings: RayTrainSettings) -> RunState:
    """Train ``trainer`` on ``settings.num_workers`` Ray Train workers; returns the final run state."""
    import ray
    import ray.train
    from ray.train.torch import TorchTrainer

    from model.train.trainers import TRAINERS

    if trainer not in TRAINERS:
        raise ValueError(f"unknown trainer {trainer!r}; trainers are {sorted(TRAINERS)}")
    if settings.use_gpu and config.device not in (None, "auto") and not config.device.startswith("cuda"):
        raise ValueError(f"--use-gpu with --device {config.device}: drop --device (Ray picks the GPU)")
    if not ray.is_initialized():
        ray.init(address=settings.address, log_to_driver=True)
    storage = storage_location(config)
    if config.fresh:
        _remove_run(storage, trainer)
    # the workers resume from Ray's checkpoints, not from a local folder: fresh is spent here; paths are
    # made absolute (a worker's working directory is not the driver's; on a cluster, the same path on
    # every node: a shared filesystem)
    paths = {
        name: Path(value).expanduser().resolve()
        for name in ("data", "coco_root", "poses", "checkpoint", "out")
        if (value := getattr(config, name)) is not None
    }
    worker_config = config.model_copy(update={"fresh": False, **paths})
    resources = {"CPU": settings.cpus_per_worker} | ({"GPU": 1} if settings.use_gpu else {})
    torch_trainer = TorchTrainer(
        _train_worker,
        train_loop_config={"config": worker_config, "trainer": trainer, "use_gpu": settings.use_gpu},
        scaling_config=ray.train.ScalingConfig(
            num_workers=settings.num_workers, use_gpu=settings.use_gpu, resources_per_worker=resources
        ),
        run_config=ray.train.RunConfig(
            name=trainer,
            storage_path=storage,
            checkpoint_config=ray.train.CheckpointConfig(num_to_keep=KEEP_CHECKPOINTS),
        ),
    )
    log.info(
        "ray train run",
        trainer=trainer,
        workers=settings.num_workers,
        use_gpu=settings.use_gpu,
        storage=f"{storage}/{trainer}",
    )
    result = torch_trainer.fit()
    if result.error is not None:
        raise result.error
    return _keep_final_checkpoint(result, config, trainer)
