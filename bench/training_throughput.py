"""Training images/s of the keypoint trainer on this CPU: 1 against 2 Ray Train workers, fp32 against bf16,
in one run — and the loss bf16 reaches against fp32's after the same steps and seed (what ``--precision
auto`` rests on: bf16 where native, if its loss stays within 2 % of fp32's and it is faster).

    .venv/bin/python bench/training_throughput.py                # the full figures (CPU to itself)
    .venv/bin/python bench/training_throughput.py --smoke        # a minute or two: proves the script

Every arm is the real trainer (``model.train.trainers.train_keypoints``) run through
``workers.train_ray.run_ray_training``: 1 worker holding every usable core, or 2 workers holding half each
(Ray sets each worker's OMP_NUM_THREADS to its CPUs), the same seed, data and per-worker batch. An arm runs
``--epochs`` epochs of ``--steps`` steps; its figure is the last epoch's images/s (all workers together,
data loading included; the first epoch carries the warm-up). The arms' order rotates between rounds
(``bench.common.side_order``); the load average is sampled throughout.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import RESULTS, LoadMonitor, environment, side_order, usable_cores  # noqa: E402
from model.train.precision import native_bf16  # noqa: E402

ARMS = ("1w-fp32", "1w-bf16", "2w-fp32", "2w-bf16")
LOSS_TOLERANCE = 0.02  # bf16's loss within 2 % of fp32's after the same steps


def _arm(name: str) -> tuple[int, str]:
    workers, precision = name.split("-")
    return int(workers.rstrip("w")), precision


def run_arm(name: str, args: argparse.Namespace, data: Path, work: Path) -> dict[str, float]:
    from model.train.config import train_config
    from workers.train_ray import RayTrainSettings, run_ray_training

    workers, precision = _arm(name)
    run_dir = Path(tempfile.mkdtemp(prefix=f"{name}-", dir=work))
    config = train_config(
        "demo",
        data=data,
        checkpoint=run_dir / "model.pt",  # absent: the same fresh network (seeded) for every arm
        out=run_dir / "out",
        input_size=args.size,
        crop_side=args.crop,
        precision=precision,
        channels_last=precision == "bf16",
        loader_workers=0,
        seed=args.seed,
        device="cpu",
        fresh=True,
        max_steps_per_epoch=args.steps,
        progress=False,
        lr_scaling="none",  # the same lr on every arm: the losses compare precisions, not lr rules
    ).with_overrides("keypoints", args.epochs, args.batch, None)
    settings = RayTrainSettings(num_workers=workers, cpus_per_worker=max(1, args.cpus // workers))
    state = run_ray_training("keypoints", config, settings)
    speed = _last_images_per_s(run_dir / "out" / "keypoints.epochs.jsonl")
    return {"images_per_s": speed, "loss": float(state.history[-1]["loss"]), "steps": float(state.step)}


def _last_images_per_s(path: Path) -> float:
    last = json.loads(path.read_text().splitlines()[-1])  # the last epoch's: past the warm-up
    return float(last["images_per_s"])


def main() -> None:
    formatter = argparse.RawDescriptionHelpFormatter
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=formatter)
    parser.add_argument("--smoke", action="store_true", help="tiny sizes, one round: checks the script")
    parser.add_argument("--images", type=int, default=64)
    parser.add_argument("--size", type=int, default=256, help="canvas side of the synthetic images")
    parser.add_argument("--crop", type=int, default=256)
    parser.add_argument("--batch", type=int, default=8, help="per worker")
    parser.add_argument("--steps", type=int, default=8, help="steps an epoch, per worker")
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--cpus", type=int, default=usable_cores(), help="CPUs Ray may use")
    parser.add_argument("--out", type=Path, default=RESULTS / "training_throughput.json")
    args = parser.parse_args()
    if args.smoke:
        args.images, args.size, args.crop, args.batch, args.steps, args.rounds = 8, 128, 96, 2, 2, 1
    import ray

    from model.data.synth import generate_dataset

    ray.init(num_cpus=args.cpus, include_dashboard=False, log_to_driver=False)
    rows: list[dict[str, object]] = []
    with tempfile.TemporaryDirectory(prefix="train-bench-") as scratch, LoadMonitor() as load:
        work = Path(scratch)
        data = work / "data"
        generate_dataset(
            data, args.images, args.seed, val_fraction=0.0, size=(args.size, args.size), progress=False
        )
        for round_index in range(args.rounds):
            for name in side_order(ARMS, round_index):
                before = [round(v, 2) for v in os.getloadavg()]
                figures = run_arm(name, args, data, work)
                rows.append({"round": round_index, "arm": name, "load_average_before": before, **figures})
                print(
                    f"round {round_index} {name}: {figures['images_per_s']:.2f} images/s, "
                    f"loss {figures['loss']:.5g}",
                    flush=True,
                )
    ray.shutdown()
    median = {
        arm: statistics.median(float(r["images_per_s"]) for r in rows if r["arm"] == arm) for arm in ARMS
    }
    loss = {arm: next(float(r["loss"]) for r in rows if r["arm"] == arm) for arm in ARMS}
    loss_ratio = loss["1w-bf16"] / loss["1w-fp32"]
    summary = {
        "images_per_s_median": {arm: round(v, 3) for arm, v in median.items()},
        "bf16_speedup_1_worker": round(median["1w-bf16"] / median["1w-fp32"], 3),
        "bf16_speedup_2_workers": round(median["2w-bf16"] / median["2w-fp32"], 3),
        "two_workers_speedup_fp32": round(median["2w-fp32"] / median["1w-fp32"], 3),
        "two_workers_speedup_bf16": round(median["2w-bf16"] / median["1w-bf16"], 3),
        "loss_after_same_steps": {arm: round(v, 6) for arm, v in loss.items()},
        "bf16_loss_ratio_1_worker": round(loss_ratio, 4),
        "native_bf16": native_bf16(torch.device("cpu")),
    }
    summary["auto_rule_holds"] = (
        bool(abs(loss_ratio - 1) <= LOSS_TOLERANCE and summary["bf16_speedup_1_worker"] > 1)
        == summary["native_bf16"]
    )
    report = {
        "benchmark": "training_throughput",
        "smoke": args.smoke,
        "settings": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        "environment": environment(),
        "load": load.summary(),
        "rows": rows,
        "summary": summary,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=1) + "\n")
    print(json.dumps(summary, indent=1))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
