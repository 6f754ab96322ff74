"""Which autocast precision a training run uses: bf16 only where the hardware computes it natively.

Measured (`bench/precision.py`: the demo preset's backbone → keypoint FPN → keypoint subnet, forward and
backward, batch 8 × 256², 2 threads) on an AVX2-only EPYC: fp32 4127 ms a step, fp32 + channels-last
4914 ms, bf16 autocast + channels-last 52133 ms (12.6× fp32: oneDNN emulates bf16 there). On an EPYC with
AVX-512 BF16 the whole keypoint trainer ran at 0.58 s a step in bf16 + channels-last, and a bare
ResNet-18 step went from 714 ms (fp32) to 356 ms. So "auto" asks the CPU (or the GPU) before choosing.
"""

from __future__ import annotations

from typing import Literal

import structlog
import torch

log = structlog.get_logger()

Precision = Literal["fp32", "bf16", "auto"]


def native_bf16(device: torch.device) -> bool:
    """Whether ``device`` runs bf16 matmuls and convolutions in hardware (AVX-512 BF16 / AMX, or a GPU
    with bf16 support)."""
    if device.type == "cuda":
        return torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    if device.type != "cpu":
        return False
    probes = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
    return any(bool(getattr(torch.cpu, probe, lambda: False)()) for probe in probes)


def resolve_precision(precision: Precision, device: torch.device) -> Literal["fp32", "bf16"]:
    """``auto`` → bf16 where native, else fp32. An explicit bf16 is kept, with a warning where emulated."""
    if precision == "auto":
        return "bf16" if native_bf16(device) else "fp32"
    if precision == "bf16" and not native_bf16(device):
        log.warning(
            "bf16 is emulated on this device (about 10x slower than fp32 on an AVX2 CPU): use auto or fp32",
            device=str(device),
            cpu_capability=torch.backends.cpu.get_cpu_capability(),
        )
    return precision
