"""Which precision a training run uses: bf16 autocast only where the hardware computes bf16 natively."""

from __future__ import annotations

import contextlib
from pathlib import Path

import pytest
import torch

from model.train.config import TrainConfig
from model.train.precision import native_bf16, resolve_precision
from model.train.trainers import autocast

CPU = torch.device("cpu")


def _cpu_flags() -> set[str]:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("flags"):
            return set(line.split(":", 1)[1].split())
    return set()


@pytest.mark.skipif(not Path("/proc/cpuinfo").is_file(), reason="reads the CPU flags from /proc/cpuinfo")
def test_native_bf16_follows_the_cpu_flags():
    flags = _cpu_flags()
    assert native_bf16(CPU) == bool({"avx512_bf16", "amx_bf16"} & flags)


def test_auto_takes_bf16_only_where_native():
    expected = "bf16" if native_bf16(CPU) else "fp32"
    assert resolve_precision("auto", CPU) == expected
    assert resolve_precision("fp32", CPU) == "fp32"
    assert resolve_precision("bf16", CPU) == "bf16"  # asked for explicitly: kept (with a warning if emulated)
    assert resolve_precision("auto", torch.device("meta")) == "fp32"


def test_the_trainers_autocast_follows_the_resolved_precision():
    config = TrainConfig(precision="auto")
    with autocast(config, CPU):
        dtype = (torch.ones(2, 2) @ torch.ones(2, 2)).dtype
    assert dtype == (torch.bfloat16 if native_bf16(CPU) else torch.float32)
    assert isinstance(autocast(TrainConfig(precision="fp32"), CPU), contextlib.nullcontext)
    with autocast(TrainConfig(precision="bf16"), CPU):
        assert (torch.ones(2, 2) @ torch.ones(2, 2)).dtype == torch.bfloat16
