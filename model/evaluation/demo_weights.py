"""``make demo-weights``: the committed demo checkpoint, from nothing, on a CPU.

Synthetic set → ``train keypoints`` → ``detection`` → ``prn`` → ``activity`` (the ``demo`` preset,
the training code's own trainers) → half precision → evaluation of the half-precision weights (COCO
keypoint/box AP on the synthetic val split, PRN on ground-truth peaks — synthetic and real COCO poses —,
activity 5-fold CV) → ``checkpoints/demo.pt`` (≤ 50 MB) and ``checkpoints/demo.md`` (figures, the exact
command, date, machine). Intermediate files go to ``--work-dir`` (``build/demo-weights``, git-ignored).

Deterministic for a seed on a given machine and thread count: the data are a function of the seed, every
trainer seeds torch/numpy and its DataLoader, and nothing depends on the clock (the recipe is sized by
steps, not by time). ``--smoke`` runs the same recipe with tiny sizes (a few minutes) to prove it works.

Run:  ``python -m model.evaluation.demo_weights [--seed 0] [--smoke]``  (what ``make demo-weights`` does).
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import hashlib
import json
import os
import platform
import shlex
import shutil
import sys
import time
from pathlib import Path
from typing import Any

import structlog
import torch

log = structlog.get_logger()

REPO = Path(__file__).resolve().parent.parent.parent
MAX_CHECKPOINT_BYTES = 50 * 1024 * 1024
TARGETS = {"keypoint_ap": 0.5, "prn_gt_ap": 0.85, "activity_macro_f1": 0.9}


@dataclasses.dataclass(frozen=True)
class Recipe:
    """Sizes of the run. The defaults are the full recipe (≈ 30–45 min on 2 CPU cores, see demo.md)."""

    seed: int = 0
    images: int = 1200  # synthetic images, train + val
    val_fraction: float = 0.1
    size: int = 256  # synthetic image side = the network's input (and training crop) side
    max_people: int = 4
    batch_size: int = 8  # keypoints and detection
    keypoint_epochs: int = 9  # ≈ 1215 steps of 8 crops: ~2.4 CPU-s each, the bulk of the time
    keypoint_lr: float = 5e-4
    detection_epochs: int = 10  # ≈ 1310 steps, ~1 CPU-s each (frozen backbone), whole-image views
    prn_epochs: int = 12
    activity_epochs: int = 30
    steps_per_epoch: int | None = None  # cap on batches per epoch (None: the whole train split)
    cv_epochs: int = 60  # activity MLP epochs per cross-validation fold
    eval_images: int | None = None  # val images for the pipeline AP (None: all)
    real_pose_scenes: int = 200
    workers: int = 1  # DataLoader processes (results do not depend on it)

    @classmethod
    def smoke(cls, seed: int = 0) -> Recipe:
        """The same steps at toy sizes: proves the recipe end to end in a few minutes."""
        return cls(
            seed=seed,
            images=24,
            val_fraction=0.25,
            size=128,
            max_people=3,
            batch_size=4,
            keypoint_epochs=1,
            detection_epochs=1,
            prn_epochs=1,
            activity_epochs=2,
            steps_per_epoch=3,
            cv_epochs=3,
            eval_images=4,
            real_pose_scenes=20,
            workers=0,
        )


def _timed(label: str, timings: dict[str, dict[str, float]], function: Any, *args: Any, **kwargs: Any) -> Any:
    wall, cpu = time.perf_counter(), time.process_time()
    result = function(*args, **kwargs)
    timings[label] = {
        "wall_s": round(time.perf_counter() - wall, 1),
        "cpu_s": round(time.process_time() - cpu, 1),
    }
    log.info("demo-weights step done", step=label, **timings[label])
    return result


def make_data(recipe: Recipe, folder: Path) -> dict[str, Any]:
    from model.data.synth import generate_dataset

    shutil.rmtree(folder, ignore_errors=True)
    return generate_dataset(
        folder,
        recipe.images,
        recipe.seed,
        val_fraction=recipe.val_fraction,
        size=(recipe.size, recipe.size),
        max_people=recipe.max_people,
        progress=False,
    )


def train_all(recipe: Recipe, data: Path, checkpoint: Path, runs: Path, timings: dict) -> dict[str, Any]:
    """The four trainers in order, each writing its part into ``checkpoint`` (fp32)."""
    from model.train.config import train_config
    from model.train.trainers import TRAINERS

    checkpoint.unlink(missing_ok=True)
    shutil.rmtree(runs, ignore_errors=True)
    epochs = {
        "keypoints": recipe.keypoint_epochs,
        "detection": recipe.detection_epochs,
        "prn": recipe.prn_epochs,
        "activity": recipe.activity_epochs,
    }
    history: dict[str, Any] = {}
    for part, part_epochs in epochs.items():
        config = train_config(
            "demo",
            data=data,
            checkpoint=checkpoint,
            out=runs,
            input_size=recipe.size,
            workers=recipe.workers,
            seed=recipe.seed,
            device="cpu",
            max_steps_per_epoch=recipe.steps_per_epoch,
            progress=False,
        )
        batch = recipe.batch_size if part in ("keypoints", "detection") else None
        lr = recipe.keypoint_lr if part == "keypoints" else None
        config = config.with_overrides(part, part_epochs, batch, lr)
        if part == "keypoints":  # one ÷3 decay for the last quarter of a short run
            step_epochs = max(1, -(-3 * part_epochs // 4))
            config = config.model_copy(
                update={"keypoints": config.keypoints.model_copy(update={"lr_step_epochs": step_epochs})}
            )
        state = _timed(f"train {part}", timings, TRAINERS[part], config)
        history[part] = {
            "epochs": state.epoch,
            "steps": state.step,
            "last": state.history[-1] if state.history else {},
        }
    return history


def to_half(source: Path, target: Path, version: str) -> Path:
    from model.checkpoint import load_checkpoint, save_checkpoint

    model, _ = load_checkpoint(source)
    return save_checkpoint(target, model, version=version, half=True)


def evaluate(recipe: Recipe, checkpoint: Path, data: Path, out: Path, timings: dict) -> dict[str, Any]:
    """Pipeline AP, PRN on ground-truth peaks (synthetic val + real poses), activity k-fold CV."""
    from model.checkpoint import load_checkpoint
    from model.evaluation.activity_cv import activity_cv_report, activity_poses
    from model.evaluation.coco_eval import evaluate_pipeline
    from model.evaluation.prn_eval import evaluate_prn_real_poses, evaluate_prn_split
    from model.pipeline import PosePipeline

    model, meta = load_checkpoint(checkpoint)
    pipeline = PosePipeline(model, str(meta["version"]), "cpu")
    results: dict[str, Any] = {}
    results["pipeline"] = _timed(
        "eval pipeline", timings, evaluate_pipeline, pipeline, data, "val", recipe.eval_images, 4, out
    )
    prn = model.prn.cpu().eval()
    results["prn"] = {
        "split": _timed("eval prn (synthetic)", timings, evaluate_prn_split, prn, data, "val"),
        "real_poses": _timed(
            "eval prn (real poses)",
            timings,
            evaluate_prn_real_poses,
            prn,
            recipe.real_pose_scenes,
            recipe.seed,
        ),
    }
    features, labels, activities = activity_poses(data, model.activities)
    results["activity"] = _timed(
        "eval activity 5-fold",
        timings,
        activity_cv_report,
        features,
        labels,
        activities,
        model.config,
        out,
        folds=5,
        seed=recipe.seed,
        epochs=recipe.cv_epochs,
    )
    return results


def headline(results: dict[str, Any]) -> dict[str, Any]:
    """The figures the issue sets targets for (+ box AP and the baseline), rounded."""
    real = results["prn"]["real_poses"]
    return {
        "keypoint_ap": round(results["pipeline"]["keypoints"]["AP"], 4),
        "keypoint_ar": round(results["pipeline"]["keypoints"]["AR"], 4),
        "box_ap": round(results["pipeline"]["bbox"]["AP"], 4),
        "prn_gt_ap": round(results["prn"]["split"]["network"]["AP"], 4),
        "prn_gt_ap_baseline": round(results["prn"]["split"]["baseline"]["AP"], 4),
        "prn_gt_ap_real_poses": None if "skipped" in real else round(real["network"]["AP"], 4),
        "prn_gt_ap_real_poses_baseline": None if "skipped" in real else round(real["baseline"]["AP"], 4),
        "activity_macro_f1": round(results["activity"]["macro"]["f1"]["mean"], 4),
        "activity_macro_f1_std": round(results["activity"]["macro"]["f1"]["std"], 4),
        "activity_accuracy": round(results["activity"]["macro"]["accuracy"]["mean"], 4),
    }


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return (
        f"{platform.system()} {platform.machine()}, {cpu}, {os.cpu_count()} logical CPUs, "
        f"torch {torch.__version__} ({torch.get_num_threads()} threads), Python {platform.python_version()}"
    )


def write_card(
    path: Path, checkpoint: Path, recipe: Recipe, figures: dict, results: dict, timings: dict, command: str
) -> Path:
    """``checkpoints/demo.md``: what the checkpoint is, how it was made, what it scores."""
    from model.evaluation.report import markdown_table, results_markdown

    size = checkpoint.stat().st_size
    digest = hashlib.sha256(checkpoint.read_bytes()).hexdigest()
    total = sum(t["wall_s"] for t in timings.values())
    target_rows = [
        [
            name,
            target,
            figures[name],
            "yes" if figures[name] is not None and figures[name] >= target else "no",
        ]
        for name, target in TARGETS.items()
    ]
    recipe_rows = [[field.name, repr(getattr(recipe, field.name))] for field in dataclasses.fields(recipe)]
    timing_rows = [[step, f"{t['wall_s']:.1f}", f"{t['cpu_s']:.1f}"] for step, t in timings.items()]
    body = [
        f"# Demo checkpoint `{checkpoint.name}`",
        "",
        "The `demo` preset (ResNet-18, FPN 128) trained from scratch on synthetic people only, all four "
        "parts, "
        "stored in half precision. `posestream infer`, `serve` and `demo` load it by default.",
        "",
        f"- command: `{command}`",
        f"- date: {datetime.datetime.now(datetime.UTC).strftime('%Y-%m-%d %H:%M UTC')}",
        f"- machine: {machine()}",
        f"- total time: {total / 60:.1f} min (wall; the CPU may have been shared)",
        f"- file: {size / 1e6:.1f} MB, sha256 `{digest}`",
        "",
        "## Targets (held-out synthetic data)",
        "",
        markdown_table(["figure", "target", "reached", "met"], target_rows),
        "",
        results_markdown(results, title="Evaluation")
        .replace("# Evaluation", "## Evaluation", 1)
        .replace("\n## ", "\n### "),
        "## Recipe",
        "",
        markdown_table(["parameter", "value"], recipe_rows),
        "",
        "## Time per step",
        "",
        markdown_table(["step", "wall s", "CPU s (this process)"], timing_rows),
        "",
    ]
    path.write_text(repo_relative("\n".join(body)))
    return path


def repo_relative(text: str) -> str:
    """Paths under the repository as ``./…``: the committed card reads the same on every clone."""
    return text.replace(f"{REPO}/", "./")


def build(recipe: Recipe, out: Path, work_dir: Path, command: str, version: str) -> dict[str, Any]:
    """The whole recipe; returns the headline figures (also written into the checkpoint and the card)."""
    from model.checkpoint import load_checkpoint, save_checkpoint
    from model.evaluation.report import write_report

    torch.manual_seed(recipe.seed)
    work_dir.mkdir(parents=True, exist_ok=True)
    data, fp32, runs, eval_dir = (
        work_dir / "data",
        work_dir / "model_fp32.pt",
        work_dir / "runs",
        work_dir / "eval",
    )
    timings: dict[str, dict[str, float]] = {}
    _timed("synthetic data", timings, make_data, recipe, data)
    history = train_all(recipe, data, fp32, runs, timings)
    half = to_half(fp32, work_dir / "model_fp16.pt", version)
    results = evaluate(recipe, half, data, eval_dir, timings)
    figures = headline(results)
    results["meta"] = {"checkpoint": str(out), "version": version, "command": command}
    write_report(results, eval_dir, "eval")
    # the shipped file: the evaluated fp16 weights (fp16 → fp32 → fp16 is exact) + figures + recipe
    model, _ = load_checkpoint(half)
    extra = {"figures": figures, "recipe": dataclasses.asdict(recipe), "training": _plain_history(history)}
    save_checkpoint(out, model, version=version, half=True, extra=extra)
    if out.stat().st_size > MAX_CHECKPOINT_BYTES:
        raise ValueError(f"{out} is {out.stat().st_size / 1e6:.1f} MB, over the 50 MB limit")
    card = write_card(out.with_suffix(".md"), out, recipe, figures, results, timings, command)
    log.info("demo checkpoint written", checkpoint=str(out), card=str(card), **figures)
    (eval_dir / "figures.json").write_text(json.dumps({"figures": figures, "timings": timings}, indent=2))
    return figures


def _plain_history(history: dict[str, Any]) -> dict[str, Any]:
    return json.loads(json.dumps(history, default=float))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m model.evaluation.demo_weights", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--smoke", action="store_true", help="toy sizes: the whole recipe in a few minutes")
    parser.add_argument(
        "--out",
        type=Path,
        default=None,
        help="checkpoint to write (default checkpoints/demo.pt; with --smoke: WORK_DIR/demo-smoke.pt)",
    )
    parser.add_argument("--work-dir", type=Path, default=REPO / "build" / "demo-weights")
    parser.add_argument(
        "--images", type=int, default=None, help="override the recipe's synthetic image count"
    )
    parser.add_argument("--keypoint-epochs", type=int, default=None)
    parser.add_argument("--steps-per-epoch", type=int, default=None)
    parser.add_argument("--record-command", default=None, help="the command to write into the card")
    args = parser.parse_args(argv)
    recipe = Recipe.smoke(args.seed) if args.smoke else Recipe(seed=args.seed)
    overrides = {
        key: value
        for key, value in {
            "images": args.images,
            "keypoint_epochs": args.keypoint_epochs,
            "steps_per_epoch": args.steps_per_epoch,
        }.items()
        if value is not None
    }
    recipe = dataclasses.replace(recipe, **overrides)
    out = args.out or (args.work_dir / "demo-smoke.pt" if args.smoke else REPO / "checkpoints" / "demo.pt")
    arguments = sys.argv[1:] if argv is None else argv
    command = args.record_command or shlex.join(["python", "-m", "model.evaluation.demo_weights", *arguments])
    version = f"demo-synthetic-seed{recipe.seed}" + ("-smoke" if args.smoke else "")
    figures = build(recipe, out, args.work_dir, command, version)
    print(json.dumps(figures, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
