"""Which autocast precision a training run uses, and the gradient scaler fp16 needs.

Measured (`bench/precision.py`: the demo preset's backbone → keypoint FPN → keypoint subnet, forward and
backward, batch 8 × 256², 2 threads) on an AVX2-only EPYC: fp32 4127 ms a step, fp32 + channels-last
4914 ms, bf16 autocast + channels-last 52133 ms (12.6× fp32: oneDNN emulates bf16 there). On an EPYC with
AVX-512 BF16 the whole keypoint trainer ran at 0.58 s a step in bf16 + channels-last, and a bare
ResNet-18 step went from 714 ms (fp32) to 356 ms. So "auto" asks the CPU (or the GPU) before choosing;
``bench/training_throughput.py`` records the loss and speed of bf16 against fp32 on the trainer itself.

fp16 (CUDA only): autocast to float16 with ``torch.amp.GradScaler`` (fp16's narrow exponent underflows
small gradients without loss scaling). On a CPU fp16 is refused: CPU autocast has no fp16 kernels worth
using and no scaler; bf16 (same exponent range as fp32) needs none.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable
from typing import Any, Literal

import structlog
import torch

log = structlog.get_logger()

Precision = Literal["fp32", "bf16", "fp16", "auto"]
Resolved = Literal["fp32", "bf16", "fp16"]
DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


def native_bf16(device: torch.device) -> bool:
    """Whether ``device`` runs bf16 matmuls and convolutions in hardware (AVX-512 BF16 / AMX, or a GPU
    with bf16 support)."""
    if device.type == "cuda":
        return torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    if device.type != "cpu":
        return False
    probes = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
    return any(bool(getattr(torch.cpu, probe, lambda: False)()) for probe in probes)


def resolve_precision(precision: Precision, device: torch.device) -> Resolved:
    """``auto`` → bf16 where native, else fp32. An explicit bf16 is kept, with a warning where emulated;
    fp16 is for CUDA only (ValueError elsewhere)."""
    if precision == "auto":
        return "bf16" if native_bf16(device) else "fp32"
    if precision == "fp16" and device.type != "cuda":
        raise ValueError(
            f"--precision fp16 needs a CUDA device (autocast + gradient scaler), not {device}; "
            "on a CPU use bf16 or auto"
        )
    if precision == "bf16" and not native_bf16(device):
        log.warning(
            "bf16 is emulated on this device (about 10x slower than fp32 on an AVX2 CPU): use auto or fp32",
            device=str(device),
            cpu_capability=torch.backends.cpu.get_cpu_capability(),
        )
    if precision not in ("fp32", "bf16", "fp16"):
        raise ValueError(f"unknown precision {precision!r}; choose fp32, bf16, fp16 or auto")
    return precision


class MixedPrecision:
    """One run's autocast and gradient scaler (a no-op scaler outside fp16, so fp32/bf16 steps are the
    plain zero_grad → backward → clip → step)."""

    def __init__(self, precision: Precision, device: torch.device) -> None:
        self.device = device
        self.precision = resolve_precision(precision, device)
        self.scaler = torch.amp.GradScaler(device.type, enabled=self.precision == "fp16")

    def autocast(self) -> contextlib.AbstractContextManager:
        """Autocast of the forward pass (weights, optimizer and loss reduction stay fp32)."""
        if self.precision == "fp32":
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=DTYPES[self.precision])

    def step(
        self,
        loss: torch.Tensor,
        optimizer: torch.optim.Optimizer,
        clip_params: Iterable[torch.Tensor] | None = None,
        clip_norm: float | None = None,
    ) -> None:
        optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        if clip_norm is not None and clip_params is not None:
            self.scaler.unscale_(optimizer)  # clip the true gradients, not the scaled ones
            torch.nn.utils.clip_grad_norm_(clip_params, clip_norm)
        self.scaler.step(optimizer)  # skips the step when fp16 gradients overflowed
        self.scaler.update()

    def state_dict(self) -> dict[str, Any]:
        return self.scaler.state_dict()

    def load_state_dict(self, state: dict[str, Any] | None) -> None:
        if state:
            self.scaler.load_state_dict(state)
