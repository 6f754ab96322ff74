"""The seed's four trainers, run separately and each writing its part into the one checkpoint file.

* ``train_keypoints`` — backbone + keypoint FPN + keypoint subnet: Adam (4e-5), masked L2 on the heatmaps
  plus intermediate supervision, step-decayed lr (reconstruction of the seed's lost Eq. 5).
* ``train_detection`` — detection FPN + RetinaNet head on the frozen backbone (BatchNorm in eval mode, no
  gradient): SGD with RetinaNet's published settings, focal loss.
* ``train_prn`` — Pose Residual Network on ground-truth keypoints: Adam (1e-3), binary cross-entropy against
  per-joint distributions; val: loss and joint-assignment accuracy.
* ``train_activity`` — activity MLP on normalised keypoints: Adam (1e-3), ReduceLROnPlateau(0.1),
  cross-entropy.

Each returns its ``RunState`` (epochs done, steps, per-epoch history).
"""

from __future__ import annotations

import math
from typing import Any

import structlog
import torch
from torch import nn
from torch.utils.data import DataLoader

from model.multiposenet import MultiPoseNet
from model.train.augment import AugmentConfig
from model.train.coco import CocoKeypoints
from model.train.config import TrainConfig
from model.train.loop import (
    Run,
    RunState,
    crop_size,
    limited,
    load_or_build_model,
    run_epoch,
    seed_everything,
)
from model.train.samples import ActivityPoseSet, PrnTrainingSet, assignment_accuracy
from model.train.schedule import multistep_factor, set_lr, step_decay_lr, warmup_factor
from model.train.targets import PoseTrainingSet, collate_pose_batch

log = structlog.get_logger()


def open_source(
    config: TrainConfig, split: str, required: bool = True, require_labelled: bool = True
) -> CocoKeypoints | None:
    """The COCO-format split named by --coco-root or --data (None for a missing optional split)."""
    root = config.coco_root or config.data
    if root is None:
        raise ValueError("give --data DIR (synthetic / COCO-format folder) or --coco-root DIR (COCO 2017)")
    try:
        return CocoKeypoints.from_root(
            root, split, max_images=config.max_images, require_labelled=require_labelled
        )
    except ValueError:
        if required:
            raise
        return None


def _loader(
    dataset: Any, batch_size: int, config: TrainConfig, shuffle: bool, collate: Any = None
) -> DataLoader:
    generator = torch.Generator().manual_seed(config.seed)
    return DataLoader(
        dataset,
        batch_size=min(batch_size, len(dataset)),
        shuffle=shuffle,
        num_workers=config.workers,
        collate_fn=collate,
        drop_last=shuffle and len(dataset) > batch_size,
        generator=generator,
        persistent_workers=False,
        pin_memory=torch.cuda.is_available(),
    )


def _steps(loader: DataLoader, config: TrainConfig) -> int:
    return min(len(loader), config.max_steps_per_epoch or len(loader))


def _pose_targets(batch: dict[str, Any], device: torch.device, keypoints: bool, boxes: bool) -> list[dict]:
    targets = []
    for index in range(batch["images"].shape[0]):
        target: dict[str, torch.Tensor] = {}
        if keypoints:
            target["keypoints"] = batch["labelled_keypoints"][index].to(device)
            target["mask"] = batch["mask"][index].to(device)
            target["joint_weights"] = batch["joint_weights"][index].to(device)
        if boxes:
            target["boxes"] = batch["boxes"][index].to(device)
        targets.append(target)
    return targets


def _pose_loader(
    config: TrainConfig,
    model: MultiPoseNet,
    split: str,
    batch_size: int,
    augment: bool,
    any_person: bool = False,
    whole_image: bool = False,
):
    """any_person: also images whose people all lack keypoints (the detector learns from them too).
    whole_image: views centred on the image, no rotation (RetinaNet's training: flips and scales only;
    rotated boxes would grow to enclose the rotated corners)."""
    source = open_source(config, split, required=split == "train", require_labelled=not any_person)
    if source is None:
        return None
    augment_values = config.augment.model_dump()
    if whole_image:
        augment_values |= {"max_rotation_deg": 0.0, "centre_on_person": False}
    augment_config = AugmentConfig(
        input_size=crop_size(config, model),
        pixel_mean_bgr=model.config.pixel_mean_bgr,
        enabled=augment,
        **augment_values,
    )
    dataset = PoseTrainingSet(
        source,
        augment_config,
        sigma=model.config.heatmap_sigma,
        joint_weight_mode=config.keypoints.joint_weight_mode,
        render_heatmaps=False,
    )
    return _loader(dataset, batch_size, config, shuffle=split == "train", collate=collate_pose_batch)


def set_batchnorm_eval(module: nn.Module) -> None:
    for child in module.modules():
        if isinstance(child, nn.modules.batchnorm._BatchNorm):
            child.eval()


def train_keypoints(config: TrainConfig) -> RunState:
    seed_everything(config.seed)
    model = load_or_build_model(config)
    run = Run("keypoints", config, model)
    hyper = config.keypoints
    model.to(run.device).train()
    train_loader = _pose_loader(config, model, "train", hyper.batch_size, augment=True)
    val_loader = _pose_loader(config, model, "val", hyper.batch_size, augment=False)
    params = [p for m in model.part_modules("keypoint") for p in m.parameters()]
    optimizer = torch.optim.Adam(params, lr=hyper.lr, weight_decay=hyper.weight_decay)
    run.restore(optimizer)

    def losses_of(batch: dict[str, Any]) -> tuple[torch.Tensor, dict[str, float]]:
        images = batch["images"].to(run.device, non_blocking=True)
        losses = model(images, _pose_targets(batch, run.device, keypoints=True, boxes=False))
        loss = losses["keypoint_heatmap"] + hyper.intermediate_weight * losses.get(
            "keypoint_intermediate", 0.0
        )
        return loss, {key: float(value.detach()) for key, value in losses.items()}

    for epoch in range(run.state.epoch + 1, hyper.epochs + 1):
        lr = step_decay_lr(epoch, hyper.lr, hyper.lr_gamma, hyper.lr_step_epochs)
        set_lr(optimizer, lr)
        model.train()

        def step(batch: dict[str, Any], lr: float = lr) -> dict[str, float]:
            loss, parts = losses_of(batch)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            run.state.step += 1
            return {"loss": float(loss.detach()), **parts, "lr": lr}

        batches = limited(train_loader, config.max_steps_per_epoch)
        metrics = run_epoch(
            batches,
            _steps(train_loader, config),
            step,
            run.state.step_losses,
            f"keypoints {epoch}/{hyper.epochs}",
            config.progress,
        )
        if val_loader is not None:
            metrics["val_loss"] = _validate(model, val_loader, config, losses_of)
        run.end_epoch(metrics, optimizer)
    return run.state


@torch.no_grad()
def _validate(model: MultiPoseNet, loader: DataLoader, config: TrainConfig, losses_of: Any) -> float:
    """Mean loss on the val split: losses need train mode (intermediate outputs), statistics must not move."""
    model.train()
    set_batchnorm_eval(model)
    total, count = 0.0, 0
    for batch in limited(loader, config.max_steps_per_epoch):
        loss, _ = losses_of(batch)
        total, count = total + float(loss), count + 1
    model.train()
    return total / max(count, 1)


def freeze_keypoint_path(model: MultiPoseNet) -> list[nn.Module]:
    """No gradient and BatchNorm statistics frozen for the backbone + keypoint FPN + keypoint subnet."""
    frozen = model.part_modules("keypoint")
    for module in frozen:
        module.eval()
        for parameter in module.parameters():
            parameter.requires_grad_(False)
    return frozen


def train_detection(config: TrainConfig) -> RunState:
    seed_everything(config.seed)
    model = load_or_build_model(config)
    if "keypoint" not in model.trained_parts:
        log.warning(
            "training detection on an untrained backbone: run `train keypoints` first",
            checkpoint=str(config.checkpoint),
        )
    run = Run("detection", config, model)
    hyper = config.detection
    model.to(run.device).train()
    frozen = freeze_keypoint_path(model)
    train_loader = _pose_loader(
        config, model, "train", hyper.batch_size, augment=True, any_person=True, whole_image=True
    )
    params = [p for m in model.part_modules("detection") for p in m.parameters()]
    optimizer = torch.optim.SGD(params, lr=hyper.lr, momentum=hyper.momentum, weight_decay=hyper.weight_decay)
    run.restore(optimizer)

    for epoch in range(run.state.epoch + 1, hyper.epochs + 1):
        model.train()
        for module in frozen:
            module.eval()
        epoch_lr = hyper.lr * multistep_factor(epoch, hyper.epochs, hyper.lr_drops)

        def step(batch: dict[str, Any], epoch_lr: float = epoch_lr) -> dict[str, float]:
            lr = epoch_lr * warmup_factor(run.state.step, hyper.warmup_iters, hyper.warmup_start_factor)
            set_lr(optimizer, lr)
            images = batch["images"].to(run.device, non_blocking=True)
            losses = model(images, _pose_targets(batch, run.device, keypoints=False, boxes=True))
            loss = losses["detection_classification"] + losses["detection_box"]
            if not math.isfinite(float(loss.detach())):
                raise FloatingPointError(
                    f"detection loss is {float(loss.detach())} at step {run.state.step}; lower --lr"
                )
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if hyper.grad_clip_norm is not None:
                torch.nn.utils.clip_grad_norm_(params, hyper.grad_clip_norm)
            optimizer.step()
            run.state.step += 1
            return {
                "loss": float(loss.detach()),
                **{k: float(v.detach()) for k, v in losses.items()},
                "lr": lr,
            }

        batches = limited(train_loader, config.max_steps_per_epoch)
        metrics = run_epoch(
            batches,
            _steps(train_loader, config),
            step,
            run.state.step_losses,
            f"detection {epoch}/{hyper.epochs}",
            config.progress,
        )
        run.end_epoch(metrics, optimizer)
    return run.state


def train_prn(config: TrainConfig) -> RunState:
    seed_everything(config.seed)
    model = load_or_build_model(config)
    run = Run("prn", config, model)
    hyper = config.prn
    prn = model.prn.to(run.device)
    train_set = PrnTrainingSet(open_source(config, "train"), model.config)
    val_source = open_source(config, "val", required=False)
    val_set = PrnTrainingSet(val_source, model.config) if val_source is not None else None
    train_loader = _loader(train_set, hyper.batch_size, config, shuffle=True)
    optimizer = torch.optim.Adam(prn.parameters(), lr=hyper.lr)
    run.restore(optimizer)

    def step(batch: tuple[torch.Tensor, torch.Tensor]) -> dict[str, float]:
        inputs, targets = (t.to(run.device, non_blocking=True) for t in batch)
        loss = prn.loss(prn(inputs), targets)["prn"]
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        run.state.step += 1
        return {"loss": float(loss.detach()), "lr": hyper.lr}

    for epoch in range(run.state.epoch + 1, hyper.epochs + 1):
        prn.train()
        batches = limited(train_loader, config.max_steps_per_epoch)
        metrics = run_epoch(
            batches,
            _steps(train_loader, config),
            step,
            run.state.step_losses,
            f"prn {epoch}/{hyper.epochs}",
            config.progress,
        )
        if val_set is not None:
            metrics["val_loss"] = _mean_loss(
                lambda x, y: prn.loss(prn(x), y)["prn"], prn, val_set, hyper.batch_size, config, run.device
            )
            # what the PRN is for: joints given to their own person (ground-truth peaks and boxes)
            accuracy = assignment_accuracy(prn, val_set.people)
            metrics["val_assignment"] = accuracy["all"]
            metrics["val_assignment_ambiguous"] = accuracy["ambiguous"]
        run.end_epoch(metrics, optimizer)
    return run.state


@torch.no_grad()
def _mean_loss(
    loss_fn: Any, module: nn.Module, dataset: Any, batch_size: int, config: TrainConfig, device: torch.device
) -> float:
    module.eval()
    total, count = 0.0, 0
    for inputs, targets in DataLoader(dataset, batch_size=batch_size, num_workers=0):
        total += float(loss_fn(inputs.to(device), targets.to(device))) * len(inputs)
        count += len(inputs)
    module.train()
    return total / max(count, 1)


def activity_dataset(config: TrainConfig, activities: tuple[str, ...]) -> ActivityPoseSet:
    """From --poses (the labelled-folder path) or from the COCO-format set's ``activity`` field."""
    if config.poses is not None:
        return ActivityPoseSet.from_poses_file(config.poses, activities)
    return ActivityPoseSet.from_coco(open_source(config, "train"), activities)


def train_activity(config: TrainConfig) -> RunState:
    seed_everything(config.seed)
    model = load_or_build_model(config)
    run = Run("activity", config, model)
    hyper = config.activity
    classifier = model.activity.to(run.device)
    train_set, val_set = activity_dataset(config, model.activities).split(hyper.val_fraction, config.seed)
    if len(train_set) < 2:
        raise ValueError("the activity classifier needs at least two training poses")
    train_loader = _loader(train_set, hyper.batch_size, config, shuffle=True)
    optimizer = torch.optim.Adam(classifier.parameters(), lr=hyper.lr)
    scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(
        optimizer, mode="min", factor=hyper.plateau_factor, patience=hyper.plateau_patience
    )
    run.restore(optimizer, scheduler)

    def step(batch: tuple[torch.Tensor, torch.Tensor]) -> dict[str, float]:
        features, labels = (t.to(run.device) for t in batch)
        logits = classifier(features)
        loss = classifier.loss(logits, labels)["activity"]
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        run.state.step += 1
        accuracy = float((logits.argmax(1) == labels).float().mean())
        return {"loss": float(loss.detach()), "accuracy": accuracy, "lr": optimizer.param_groups[0]["lr"]}

    for epoch in range(run.state.epoch + 1, hyper.epochs + 1):
        classifier.train()
        batches = limited(train_loader, config.max_steps_per_epoch)
        metrics = run_epoch(
            batches,
            _steps(train_loader, config),
            step,
            run.state.step_losses,
            f"activity {epoch}/{hyper.epochs}",
            config.progress,
        )
        if len(val_set):
            metrics["val_loss"] = _mean_loss(
                lambda x, y: classifier.loss(classifier(x), y)["activity"],
                classifier,
                val_set,
                256,
                config,
                run.device,
            )
            metrics["val_accuracy"] = _accuracy(classifier, val_set, run.device)
        scheduler.step(metrics.get("val_loss", metrics["loss"]))
        run.end_epoch(metrics, optimizer, scheduler)
    return run.state


@torch.no_grad()
def _accuracy(classifier: nn.Module, dataset: Any, device: torch.device) -> float:
    classifier.eval()
    features, labels = next(iter(DataLoader(dataset, batch_size=len(dataset))))
    accuracy = float((classifier(features.to(device)).argmax(1).cpu() == labels).float().mean())
    classifier.train()
    return accuracy


TRAINERS = {
    "keypoints": train_keypoints,
    "detection": train_detection,
    "prn": train_prn,
    "activity": train_activity,
}
