"""Training-step time of the demo preset's keypoint path in fp32, fp32 + channels-last and bf16 autocast +
channels-last, as ratios to fp32 measured in the same run (what ``precision: auto`` decides from).

    .venv/bin/python bench/precision.py [--batch 8] [--side 256] [--iterations 3] [--out FILE.json]

One step is backbone → keypoint FPN → keypoint subnet, forward and backward, on random crops. bf16 pays
only where the CPU computes it natively (AVX-512 BF16 / AMX); elsewhere oneDNN emulates it.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from model.config import ModelConfig
from model.multiposenet import MultiPoseNet
from model.train.precision import native_bf16

ARMS = (("fp32", False), ("fp32", True), ("bf16", True))


def _tensors(value: object) -> list[torch.Tensor]:
    if isinstance(value, torch.Tensor):
        return [value]
    if isinstance(value, dict):
        value = list(value.values())
    if isinstance(value, (list, tuple)):
        return [t for item in value for t in _tensors(item)]
    return []


def step_ms(
    model: MultiPoseNet, images: torch.Tensor, precision: str, channels_last: bool, iterations: int
) -> float:
    memory = torch.channels_last if channels_last else torch.contiguous_format
    model.to(memory_format=memory)
    images = images.contiguous(memory_format=memory)

    def once() -> None:
        model.zero_grad(set_to_none=True)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "bf16"):
            heatmaps = model.keypoint_head(model.keypoint_fpn(model.backbone(images)))
        sum(t.float().mean() for t in _tensors(heatmaps)).backward()

    once()  # warm-up: oneDNN picks its kernels
    times = []
    for _ in range(iterations):
        started = time.perf_counter()
        once()
        times.append((time.perf_counter() - started) * 1000)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--side", type=int, default=256)
    parser.add_argument("--iterations", type=int, default=3)
    parser.add_argument("--out", type=Path, default=Path("bench/results/precision.json"))
    args = parser.parse_args()
    torch.manual_seed(0)
    model = MultiPoseNet(ModelConfig.preset("demo")).train()
    images = torch.randn(args.batch, 3, args.side, args.side)
    rows = []
    for precision, channels_last in ARMS:
        ms = step_ms(model, images, precision, channels_last, args.iterations)
        rows.append({"precision": precision, "channels_last": channels_last, "step_ms": round(ms, 1)})
        print(f"{precision:5s} channels_last={channels_last!s:5s} {ms:8.1f} ms/step", flush=True)
    baseline = rows[0]["step_ms"]
    for row in rows:
        row["ratio_to_fp32"] = round(row["step_ms"] / baseline, 2)
    result = {
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "native_bf16": native_bf16(torch.device("cpu")),
        "threads": torch.get_num_threads(),
        "batch": args.batch,
        "side": args.side,
        "rows": rows,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
