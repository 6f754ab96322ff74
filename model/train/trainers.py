"""The seed's four trainers, run separately and each writing its part into the one checkpoint file.

* ``train_keypoints`` — backbone + keypoint FPN + keypoint subnet: Adam (4e-5), masked L2 on the heatmaps
  plus intermediate supervision, step-decayed lr (reconstruction of the seed's lost Eq. 5).
* ``train_detection`` — detection FPN + RetinaNet head on the frozen backbone (BatchNorm in eval mode, no
  gradient): SGD with RetinaNet's published settings, focal loss.
* ``train_prn`` — Pose Residual Network on ground-truth keypoints: Adam (1e-3), binary cross-entropy against
  per-joint distributions; val: loss and joint-assignment accuracy.
* ``train_activity`` — activity MLP on normalised keypoints: Adam (1e-3), ReduceLROnPlateau(0.1),
  cross-entropy.

Each returns its ``RunState`` (epochs done, steps, per-epoch history). The same functions run in one
process and in each of N data-parallel workers (``workers/train_ray.py`` hands them a Ray Train reporter;
``model/train/distributed.py`` has the DDP wrapping, the data split and the batch/lr rule).
"""

from __future__ import annotations

import contextlib
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
from model.train.distributed import distribute, mean_across_workers, sampler_for, scaled_for_world
from model.train.loop import (
    Run,
    RunState,
    crop_size,
    limited,
    load_or_build_model,
    run_epoch,
    seed_epoch,
    seed_everything,
    set_sampler_epoch,
)
from model.train.precision import MixedPrecision
from model.train.prn_noise import PrnNoise
from model.train.reporting import TrainingReporter
from model.train.samples import ActivityPoseSet, PrnTrainingSet, assignment_accuracy
from model.train.schedule import multistep_factor, set_lr, step_decay_lr, warmup_factor
from model.train.targets import PoseTrainingSet, collate_pose_batch

log = structlog.get_logger()


def open_source(
    config: TrainConfig,
    split: str,
    required: bool = True,
    require_labelled: bool = True,
    include_empty: bool = False,
) -> CocoKeypoints | None:
    """The COCO-format split named by --coco-root or --data (None for a missing optional split)."""
    root = config.coco_root or config.data
    if root is None:
        raise ValueError("give --data DIR (synthetic / COCO-format folder) or --coco-root DIR (COCO 2017)")
    try:
        return CocoKeypoints.from_root(
            root,
            split,
            max_images=config.max_images,
            require_labelled=require_labelled,
            include_empty=include_empty,
        )
    except ValueError:
        if required:
            raise
        return None


def _loader(
    dataset: Any, batch_size: int, config: TrainConfig, shuffle: bool, collate: Any = None
) -> DataLoader:
    generator = torch.Generator().manual_seed(config.seed)
    sampler = sampler_for(dataset, shuffle, config.seed)  # None in one process: the seeded shuffle below
    count = len(sampler) if sampler is not None else len(dataset)
    return DataLoader(
        dataset,
        batch_size=min(batch_size, count),
        shuffle=shuffle and sampler is None,
        sampler=sampler,
        num_workers=config.loader_workers,
        collate_fn=collate,
        drop_last=shuffle and count > batch_size,
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
    """any_person: also images whose people all lack keypoints, and images with nobody in them (the
    detector learns from both).
    whole_image: views centred on the image, no rotation (RetinaNet's training: flips and scales only;
    rotated boxes would grow to enclose the rotated corners)."""
    source = open_source(
        config, split, required=split == "train", require_labelled=not any_person, include_empty=any_person
    )
    if source is None:
        return None
    augment_values = config.augment.model_dump()
    crop = crop_size(config, model)
    canvas = tuple(model.config.input_size)
    if whole_image:
        # a crop smaller than the canvas roams over it (centre anywhere the window still overlaps)
        roam = 0.5 * max(0.0, canvas[0] / crop[0] - 1.0)
        augment_values |= {
            "max_rotation_deg": 0.0,
            "centre_on_person": False,
            "centre_jitter": min(1.0, roam),
        }
    augment_config = AugmentConfig(
        input_size=crop,
        canvas_size=canvas,
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


def autocast(config: TrainConfig, device: torch.device) -> contextlib.AbstractContextManager:
    """bf16/fp16 autocast of the forward pass when asked (weights, optimizer, loss reduction stay fp32)."""
    return MixedPrecision(config.precision, device).autocast()


def to_memory_format(images: torch.Tensor, config: TrainConfig) -> torch.Tensor:
    return images.contiguous(memory_format=torch.channels_last) if config.channels_last else images


def keypoint_lr(config: TrainConfig, epoch: int, step: int, total_steps: int) -> float:
    """The keypoint trainer's lr for 1-based ``epoch`` / 0-based optimizer ``step`` of ``total_steps``."""
    hyper = config.keypoints
    if hyper.lr_schedule == "step":
        return step_decay_lr(epoch, hyper.lr, hyper.lr_gamma, hyper.lr_step_epochs)
    if step < hyper.warmup_steps:
        return hyper.lr * (step + 1) / hyper.warmup_steps
    span = max(1, total_steps - hyper.warmup_steps)
    progress = min(1.0, (step - hyper.warmup_steps) / span)
    floor = hyper.lr * hyper.min_lr_factor
    return floor + (hyper.lr - floor) * 0.5 * (1 + math.cos(math.pi * progress))


def set_batchnorm_eval(module: nn.Module) -> None:
    for child in module.modules():
        if isinstance(child, nn.modules.batchnorm._BatchNorm):
            child.eval()


def train_keypoints(config: TrainConfig, reporter: TrainingReporter | None = None) -> RunState:
    config = scaled_for_world(config, "keypoints")
    seed_everything(config.seed)
    model = load_or_build_model(config)
    run = Run("keypoints", config, model, reporter)
    hyper = config.keypoints
    model.to(run.device).train()
    train_loader = _pose_loader(config, model, "train", hyper.batch_size, augment=True)
    val_loader = _pose_loader(config, model, "val", hyper.batch_size, augment=False)
    if config.channels_last:
        model.to(memory_format=torch.channels_last)
    frozen = freeze_modules([model.backbone]) if hyper.freeze_backbone else []
    params = [p for m in model.part_modules("keypoint") for p in m.parameters() if p.requires_grad]
    optimizer = torch.optim.Adam(params, lr=hyper.lr, weight_decay=hyper.weight_decay)
    run.restore(optimizer)
    net = distribute(model, params, run.device)
    total_steps = hyper.epochs * _steps(train_loader, config)

    def losses_of(batch: dict[str, Any], forward: nn.Module = net) -> tuple[torch.Tensor, dict[str, float]]:
        images = to_memory_format(batch["images"].to(run.device, non_blocking=True), config)
        with run.precision.autocast():
            losses = forward(images, _pose_targets(batch, run.device, keypoints=True, boxes=False))
        losses = {key: value.float() for key, value in losses.items()}
        loss = losses["keypoint_heatmap"] + hyper.intermediate_weight * losses.get(
            "keypoint_intermediate", 0.0
        )
        return loss, {key: float(value.detach()) for key, value in losses.items()}

    for epoch in range(run.state.epoch + 1, hyper.epochs + 1):
        seed_epoch(config, epoch, train_loader)
        model.train()
        for module in frozen:
            module.eval()

        def step(batch: dict[str, Any], epoch: int = epoch) -> dict[str, float]:
            lr = keypoint_lr(config, epoch, run.state.step, total_steps)
            set_lr(optimizer, lr)
            loss, parts = losses_of(batch)
            run.precision.step(loss, optimizer)
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
            run.state.throughput,
        )
        if val_loader is not None:
            # the final map's own loss too: it is what inference uses (intermediate levels are training aids)
            # each worker validates its share of the val split; end_epoch averages the workers' figures
            metrics["val_loss"], val_parts = _validate(
                model, val_loader, config, lambda batch: losses_of(batch, model)
            )
            metrics["val_heatmap"] = val_parts.get("keypoint_heatmap", float("nan"))
            # the loss alone cannot tell learning from collapse: a subnet that predicts flat maps scores a
            # similar loss (all background) — its joint peaks stay near 0 instead of approaching 1
            metrics["val_peak_height"] = _peak_height(model, val_loader, config, run.device)
        run.end_epoch(metrics, optimizer)
    return run.state


@torch.no_grad()
def _peak_height(model: MultiPoseNet, loader: DataLoader, config: TrainConfig, device: torch.device) -> float:
    """Mean, over the val crops' labelled joints, of that joint channel's highest heatmap value (→ 1 as
    the subnet learns; ≈ 0.1 or less for a subnet that predicts flat maps)."""
    was_training = model.training
    model.eval()
    heights: list[torch.Tensor] = []
    for batch in limited(loader, config.max_steps_per_epoch):
        images = to_memory_format(batch["images"].to(device), config)
        with autocast(config, device):
            heatmaps, _ = model.keypoint_head(model.keypoint_fpn(model.backbone(images)))
        peaks = heatmaps[:, : heatmaps.shape[1] - 1].float().amax(dim=(2, 3))  # (B, 17)
        for index, keypoints in enumerate(batch["labelled_keypoints"]):
            labelled = (keypoints[..., 2] > 0).any(dim=0) if len(keypoints) else torch.zeros(17, dtype=bool)
            heights.append(peaks[index].cpu()[labelled])
    model.train(was_training)
    values = torch.cat(heights) if heights else torch.zeros(0)
    return float(values.mean()) if len(values) else float("nan")


@torch.no_grad()
def _validate(
    model: MultiPoseNet, loader: DataLoader, config: TrainConfig, losses_of: Any
) -> tuple[float, dict[str, float]]:
    """Mean loss (and mean of each part) on the val split: losses need train mode (intermediate outputs),
    statistics must not move."""
    model.train()
    set_batchnorm_eval(model)
    total, count, sums = 0.0, 0, {}
    for batch in limited(loader, config.max_steps_per_epoch):
        loss, parts = losses_of(batch)
        total, count = total + float(loss), count + 1
        for key, value in parts.items():
            sums[key] = sums.get(key, 0.0) + value
    model.train()
    return total / max(count, 1), {key: value / max(count, 1) for key, value in sums.items()}


def freeze_modules(modules: list[nn.Module]) -> list[nn.Module]:
    """No gradient and BatchNorm statistics frozen for ``modules`` (put back in eval mode each epoch)."""
    for module in modules:
        module.eval()
        for parameter in module.parameters():
            parameter.requires_grad_(False)
    return modules


def freeze_keypoint_path(model: MultiPoseNet) -> list[nn.Module]:
    """No gradient and BatchNorm statistics frozen for the backbone + keypoint FPN + keypoint subnet."""
    return freeze_modules(model.part_modules("keypoint"))


def train_detection(config: TrainConfig, reporter: TrainingReporter | None = None) -> RunState:
    config = scaled_for_world(config, "detection")
    seed_everything(config.seed)
    model = load_or_build_model(config)
    if "keypoint" not in model.trained_parts:
        log.warning(
            "training detection on an untrained backbone: run `train keypoints` first",
            checkpoint=str(config.checkpoint),
        )
    run = Run("detection", config, model, reporter)
    hyper = config.detection
    model.to(run.device).train()
    frozen = freeze_keypoint_path(model)
    if config.channels_last:
        model.to(memory_format=torch.channels_last)
    train_loader = _pose_loader(
        config, model, "train", hyper.batch_size, augment=True, any_person=True, whole_image=True
    )
    params = [p for m in model.part_modules("detection") for p in m.parameters()]
    optimizer = torch.optim.SGD(params, lr=hyper.lr, momentum=hyper.momentum, weight_decay=hyper.weight_decay)
    run.restore(optimizer)
    net = distribute(model, params, run.device)

    for epoch in range(run.state.epoch + 1, hyper.epochs + 1):
        seed_epoch(config, epoch, train_loader)
        model.train()
        for module in frozen:
            module.eval()
        epoch_lr = hyper.lr * multistep_factor(epoch, hyper.epochs, hyper.lr_drops)

        def step(batch: dict[str, Any], epoch_lr: float = epoch_lr) -> dict[str, float]:
            lr = epoch_lr * warmup_factor(run.state.step, hyper.warmup_iters, hyper.warmup_start_factor)
            set_lr(optimizer, lr)
            images = to_memory_format(batch["images"].to(run.device, non_blocking=True), config)
            with run.precision.autocast():
                losses = net(images, _pose_targets(batch, run.device, keypoints=False, boxes=True))
            losses = {key: value.float() for key, value in losses.items()}
            loss = losses["detection_classification"] + losses["detection_box"]
            if not math.isfinite(float(loss.detach())):
                raise FloatingPointError(
                    f"detection loss is {float(loss.detach())} at step {run.state.step}; lower --lr"
                )
            run.precision.step(loss, optimizer, params, hyper.grad_clip_norm)
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
            run.state.throughput,
        )
        run.end_epoch(metrics, optimizer)
    return run.state


def train_prn(config: TrainConfig, reporter: TrainingReporter | None = None) -> RunState:
    config = scaled_for_world(config, "prn")
    seed_everything(config.seed)
    model = load_or_build_model(config)
    run = Run("prn", config, model, reporter)
    hyper = config.prn
    prn = model.prn.to(run.device)
    real_train = _real_pose_train_part() if hyper.real_pose_fraction > 0 else None
    train_set = PrnTrainingSet(
        open_source(config, "train"),
        model.config,
        real_annotations=real_train,
        real_pose_fraction=hyper.real_pose_fraction,
        seed=config.seed,
        noise=PrnNoise(hyper.box_jitter, hyper.point_jitter, hyper.mirror_prob, hyper.drop_prob),
    )
    log.info(
        "prn training samples",
        synthetic=train_set.sources.count("synthetic"),
        real=train_set.sources.count("real"),
    )
    val_source = open_source(config, "val", required=False)
    val_set = PrnTrainingSet(val_source, model.config) if val_source is not None else None
    train_loader = _loader(train_set, hyper.batch_size, config, shuffle=True)
    optimizer = torch.optim.Adam(prn.parameters(), lr=hyper.lr)
    run.restore(optimizer)
    forward = distribute(prn, prn.parameters(), run.device)

    def step(batch: tuple[torch.Tensor, torch.Tensor]) -> dict[str, float]:
        inputs, targets = (t.to(run.device, non_blocking=True) for t in batch)
        loss = prn.loss(forward(inputs), targets)["prn"]
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        run.state.step += 1
        return {"loss": float(loss.detach()), "lr": hyper.lr}

    for epoch in range(run.state.epoch + 1, hyper.epochs + 1):
        set_sampler_epoch(epoch, train_loader)
        prn.train()
        batches = limited(train_loader, config.max_steps_per_epoch)
        metrics = run_epoch(
            batches,
            _steps(train_loader, config),
            step,
            run.state.step_losses,
            f"prn {epoch}/{hyper.epochs}",
            config.progress,
            run.state.throughput,
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
    """Ground-truth poses of the COCO-format train split's ``activity`` field (--data / --coco-root) and/or
    the poses of a poses file (--poses: ``extract_poses`` / ``extract_activity_poses``); with both, the two
    concatenated, each sample tagged with its source and grouped by image (``ActivityPoseSet.split``)."""
    parts: list[ActivityPoseSet] = []
    if config.data is not None or config.coco_root is not None:
        try:
            parts.append(ActivityPoseSet.from_coco(open_source(config, "train"), activities))
        except ValueError as exc:
            if config.poses is None:
                raise
            log.warning("no ground-truth activity poses; training on --poses only", reason=str(exc))
    if config.poses is not None:
        parts.append(ActivityPoseSet.from_poses_file(config.poses, activities))
    if not parts:
        raise ValueError("give --data/--coco-root (ground-truth poses) and/or --poses FILE (predicted poses)")
    return parts[0] if len(parts) == 1 else ActivityPoseSet.concat(parts)


def train_activity(config: TrainConfig, reporter: TrainingReporter | None = None) -> RunState:
    config = scaled_for_world(config, "activity")
    seed_everything(config.seed)
    model = load_or_build_model(config)
    run = Run("activity", config, model, reporter)
    hyper = config.activity
    classifier = model.activity.to(run.device)
    poses = activity_dataset(config, model.activities)
    train_set, val_set = poses.split(hyper.val_fraction, config.seed)
    if len(train_set) < 2:
        raise ValueError("the activity classifier needs at least two training poses")
    val_by_source = _subsets_by_source(poses, val_set.indices)
    log.info(
        "activity poses",
        train=poses.source_counts(train_set.indices),
        val=poses.source_counts(val_set.indices),
    )
    train_loader = _loader(train_set, hyper.batch_size, config, shuffle=True)
    optimizer = torch.optim.Adam(classifier.parameters(), lr=hyper.lr)
    scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(
        optimizer, mode="min", factor=hyper.plateau_factor, patience=hyper.plateau_patience
    )
    run.restore(optimizer, scheduler)
    forward = distribute(classifier, classifier.parameters(), run.device)

    def step(batch: tuple[torch.Tensor, torch.Tensor]) -> dict[str, float]:
        features, labels = (t.to(run.device) for t in batch)
        logits = forward(features)
        loss = classifier.loss(logits, labels)["activity"]
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        run.state.step += 1
        accuracy = float((logits.argmax(1) == labels).float().mean())
        return {"loss": float(loss.detach()), "accuracy": accuracy, "lr": optimizer.param_groups[0]["lr"]}

    for epoch in range(run.state.epoch + 1, hyper.epochs + 1):
        set_sampler_epoch(epoch, train_loader)
        classifier.train()
        batches = limited(train_loader, config.max_steps_per_epoch)
        metrics = run_epoch(
            batches,
            _steps(train_loader, config),
            step,
            run.state.step_losses,
            f"activity {epoch}/{hyper.epochs}",
            config.progress,
            run.state.throughput,
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
            if len(val_by_source) > 1:  # e.g. val_accuracy_predicted: on the poses the model will see
                for source, subset in val_by_source.items():
                    metrics[f"val_accuracy_{source}"] = _accuracy(classifier, subset, run.device)
        metrics = mean_across_workers(metrics)  # the plateau rule sees the same loss on every worker
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


def _real_pose_train_part() -> list[dict[str, Any]]:
    """The train part of the real COCO poses (``model.data.coco_sp``); the held-out part is the figure's."""
    from model.data.coco_sp import CocoSpUnavailableError, load_coco_sp_annotations, split_real_annotations

    try:
        annotations = load_coco_sp_annotations()["annotations"]
    except CocoSpUnavailableError as exc:
        raise ValueError(f"real_pose_fraction > 0 needs the real COCO poses: {exc}") from exc
    return split_real_annotations(annotations)[0]


def _subsets_by_source(poses: ActivityPoseSet, indices: list[int]) -> dict[str, torch.utils.data.Subset]:
    by_source: dict[str, list[int]] = {}
    for index in indices:
        by_source.setdefault(poses.sources[index], []).append(index)
    return {source: torch.utils.data.Subset(poses, chosen) for source, chosen in sorted(by_source.items())}


TRAINERS = {
    "keypoints": train_keypoints,
    "detection": train_detection,
    "prn": train_prn,
    "activity": train_activity,
}
