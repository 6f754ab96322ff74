"""Data-parallel training with torch's own process group (set up by Ray Train's TorchTrainer, or by
``torchrun``): one loop serves one process and N.

Rule for the effective batch and learning rate across workers: ``--batch-size`` is per worker (each
worker's steps cost what a 1-process step costs), so the effective batch is ``world_size × batch_size``
and, with ``lr_scaling: linear`` (the default), every trainer's learning rate is multiplied by the world
size (Goyal et al., "Accurate, Large Minibatch SGD", 2017), warm-ups and schedules unchanged.
``--lr-scaling none`` keeps the given lr. With one process both rules are the same run.

BatchNorm statistics stay per worker (plain BatchNorm, not SyncBatchNorm: the seed's batch of 8 per GPU
is what its BatchNorm saw); DDP broadcasts rank 0's buffers before each forward.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable

import torch
import torch.distributed as dist
from torch import nn
from torch.utils.data import Dataset, DistributedSampler

from model.train.config import Part, TrainConfig


def world() -> tuple[int, int]:
    """(rank, world size) of this process: (0, 1) without a process group."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def scaled_for_world(config: TrainConfig, part: Part) -> TrainConfig:
    """``config`` with ``part``'s lr scaled by the stated rule (unchanged for one process)."""
    _, size = world()
    if size == 1 or config.lr_scaling == "none":
        return config
    section = getattr(config, part)
    return config.model_copy(update={part: section.model_copy(update={"lr": section.lr * size})})


def sampler_for(dataset: Dataset, shuffle: bool, seed: int) -> DistributedSampler | None:
    """This worker's share of ``dataset`` (None for one process: the loader's own seeded shuffle)."""
    rank, size = world()
    if size == 1:
        return None
    # drop_last=False: the sampler pads with repeats so every worker takes the same number of steps
    return DistributedSampler(dataset, num_replicas=size, rank=rank, shuffle=shuffle, seed=seed)


def distribute(module: nn.Module, trained: Iterable[nn.Parameter], device: torch.device) -> nn.Module:
    """``module`` itself for one process; else wrapped in DistributedDataParallel, the parameters outside
    ``trained`` frozen first (DDP would wait for gradients that parts left out of the loss never get)."""
    _, size = world()
    if size == 1:
        return module
    keep = {id(parameter) for parameter in trained}
    for parameter in module.parameters():
        if id(parameter) not in keep:
            parameter.requires_grad_(False)
    device_ids = [device.index if device.index is not None else 0] if device.type == "cuda" else None
    return nn.parallel.DistributedDataParallel(module, device_ids=device_ids)


def _collective_device() -> torch.device:
    if dist.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def mean_across_workers(metrics: dict[str, float]) -> dict[str, float]:
    """Each metric averaged over the workers (each saw its own share of the data); as is for one."""
    _, size = world()
    if size == 1 or not metrics:
        return metrics
    keys = sorted(metrics)
    values = torch.tensor([float(metrics[k]) for k in keys], dtype=torch.float64, device=_collective_device())
    dist.all_reduce(values)
    return {key: float(value) / size for key, value in zip(keys, values.cpu(), strict=True)}


def replicas_identical(module: nn.Module) -> bool:
    """Whether every worker holds the same weights (a fingerprint of the parameters, gathered); True for
    one process. DDP keeps them equal by construction; this checks it once an epoch."""
    _, size = world()
    if size == 1:
        return True
    digest = hashlib.sha256()
    for parameter in module.parameters():
        digest.update(parameter.detach().cpu().contiguous().numpy().tobytes())
    fingerprint = int.from_bytes(digest.digest()[:7], "big")
    mine = torch.tensor([fingerprint], dtype=torch.int64, device=_collective_device())
    gathered = [torch.zeros_like(mine) for _ in range(size)]
    dist.all_gather(gathered, mine)
    return all(bool((value == mine).all()) for value in gathered)
