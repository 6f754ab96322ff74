"""Training settings: the seed's numbers as defaults, every one overridable (CLI or ``POSESTREAM_TRAIN_*``).

Nested values come from the environment with ``__``, e.g. ``POSESTREAM_TRAIN_KEYPOINTS__LR_STEP_EPOCHS=5``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class KeypointHyper(BaseModel):
    """Seed: Adam, initial lr 4e-5, L2 with mask W and intermediate supervision, lr by its Eq. 5 (lost;
    reconstructed as a step decay, see ``schedule.py``)."""

    model_config = ConfigDict(extra="forbid")
    epochs: int = Field(100, ge=1)
    batch_size: int = Field(8, ge=1)
    lr: float = Field(4e-5, gt=0)
    lr_gamma: float = Field(0.333, gt=0, le=1)
    lr_step_epochs: int = Field(30, ge=1)
    weight_decay: float = Field(0.0, ge=0)
    intermediate_weight: float = Field(1.0, ge=0)  # Σ_i ‖W·(Z_i − S)‖² enters the loss with this factor
    joint_weight_mode: Literal["all", "labelled"] = "all"
    # "step": the seed's reconstruction (above); "cosine": linear warm-up over ``warmup_steps`` then a
    # cosine decay to ``lr · min_lr_factor`` at the last step (per step, for short runs from random weights).
    lr_schedule: Literal["step", "cosine"] = "step"
    warmup_steps: int = Field(0, ge=0)
    min_lr_factor: float = Field(0.02, ge=0, le=1)
    # True: only the keypoint FPN + subnet learn, the ResNet trunk (BatchNorm statistics too) stays as it
    # is: continues a finished checkpoint without moving the features its detector was trained on
    freeze_backbone: bool = False


class DetectionHyper(BaseModel):
    """RetinaNet (Lin et al.) as published: SGD, lr 0.01 for 16 images, momentum 0.9, weight decay 1e-4,
    linear warm-up from lr/3, ÷10 at 2/3 and 8/9 of training (60k/80k of 90k iterations); focal loss
    α = 0.25, γ = 2 (torchvision's RetinaNet head)."""

    model_config = ConfigDict(extra="forbid")
    epochs: int = Field(24, ge=1)
    batch_size: int = Field(16, ge=1)
    lr: float = Field(0.01, gt=0)
    momentum: float = Field(0.9, ge=0, lt=1)
    weight_decay: float = Field(1e-4, ge=0)
    warmup_iters: int = Field(500, ge=0)
    warmup_start_factor: float = Field(1 / 3, gt=0, le=1)
    lr_drops: tuple[float, ...] = (2 / 3, 8 / 9)  # fractions of the epochs after which lr ÷ 10
    grad_clip_norm: float | None = Field(10.0, gt=0)  # guards early focal-loss spikes; None: off


class PrnHyper(BaseModel):
    """Seed: Adam lr 1e-3, binary cross-entropy, ground-truth keypoints only.

    ``real_pose_fraction``: share of the training samples made from real COCO poses (the train part of
    ``model.data.coco_sp``) overlaid 2–4 to a scene; 0 = the seed's synthetic-only training."""

    model_config = ConfigDict(extra="forbid")
    epochs: int = Field(30, ge=1)
    batch_size: int = Field(64, ge=1)
    lr: float = Field(1e-3, gt=0)
    real_pose_fraction: float = Field(0.0, ge=0, lt=1)
    # inputs that look like the backbone's peaks (model/train/prn_noise.py); 0: the seed's clean ground truth
    box_jitter: float = Field(0.0, ge=0, le=1)
    point_jitter: float = Field(0.0, ge=0, le=1)
    mirror_prob: float = Field(0.0, ge=0, lt=1)
    drop_prob: float = Field(0.0, ge=0, lt=1)


class ActivityHyper(BaseModel):
    """Seed: Adam lr 1e-3, reduce on plateau by 0.1, categorical cross-entropy."""

    model_config = ConfigDict(extra="forbid")
    epochs: int = Field(100, ge=1)
    batch_size: int = Field(32, ge=1)
    lr: float = Field(1e-3, gt=0)
    plateau_factor: float = Field(0.1, gt=0, lt=1)
    plateau_patience: int = Field(5, ge=0)
    val_fraction: float = Field(0.2, ge=0, lt=1)  # the seed's 20 % validation split


class AugmentHyper(BaseModel):
    """Seed: rotations within ±40°, scale 0.7–1.2, flip with p = 0.3 (horizontal here, see DESIGN.md)."""

    model_config = ConfigDict(extra="forbid")
    max_rotation_deg: float = Field(40.0, ge=0, le=180)
    scale_range: tuple[float, float] = (0.7, 1.2)
    flip_prob: float = Field(0.3, ge=0, le=1)
    centre_jitter: float = Field(0.0, ge=0, le=1)  # crop centre moved by up to this fraction of the crop


Part = Literal["keypoints", "detection", "prn", "activity"]


class TrainConfig(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="POSESTREAM_TRAIN_", env_nested_delimiter="__", extra="forbid"
    )

    data: Path | None = None  # a synthetic (or any COCO-format) folder: annotations/person_keypoints_*.json
    coco_root: Path | None = None  # real COCO 2017: annotations/person_keypoints_{train,val}2017.json
    # activity only: a poses file (``extract_poses`` / ``extract_activity_poses``); with --data as well,
    # both are used (ground-truth and predicted poses, split by image)
    poses: Path | None = None
    checkpoint: Path = Path("checkpoints/model.pt")  # read (when present) and written
    out: Path = Path("runs")  # curves, history; the run checkpoints too unless ``storage`` is given
    # Where the run checkpoints go (model/train/reporting.py): a path, or under Ray Train a URI
    # (s3://, gs://) or a shared (NFS) path every node sees. None: ``out``. A run resumes from its latest
    # checkpoint there unless ``fresh``.
    storage: str | None = None
    fresh: bool = False
    preset: Literal["demo", "default"] = "default"  # model sizes when the checkpoint does not exist yet
    # A fresh network's square canvas side (None: the preset's). People are scaled onto this canvas as at
    # inference; ``crop_side`` (None: the canvas) cuts smaller training windows from it (cheaper steps).
    input_size: int | None = Field(None, ge=32)
    crop_side: int | None = Field(None, ge=32)
    # bf16: autocast of the keypoint/detection forward (CPU with AVX-512 BF16 or CUDA); fp32 master weights.
    # fp16: the same on CUDA with a gradient scaler (refused on a CPU).
    # auto: bf16 only where the hardware has it (model/train/precision.py: emulated bf16 is 10x slower).
    precision: Literal["fp32", "bf16", "fp16", "auto"] = "fp32"
    channels_last: bool = False  # NHWC tensors for the convolutions (faster oneDNN/cuDNN kernels)
    loader_workers: int = Field(2, ge=0)  # DataLoader processes (per training worker under Ray Train)
    # Across N training workers: --batch-size is per worker; "linear" multiplies lr by N (distributed.py)
    lr_scaling: Literal["linear", "none"] = "linear"
    seed: int = 0
    device: str | None = None  # None/"auto": CUDA when present
    # A new network's trunk: "imagenet" (torchvision's weights, the seed's start), a state dict PATH, or
    # "none" (random). None: the preset's ("imagenet" for default, "none" for the drawn-people demo).
    backbone_weights: str | None = None
    max_steps_per_epoch: int | None = Field(None, ge=1)  # caps an epoch (smoke runs)
    max_images: int | None = Field(None, ge=1)  # the first N images of each split only (overfit checks)
    progress: bool = True

    augment: AugmentHyper = AugmentHyper()
    keypoints: KeypointHyper = KeypointHyper()
    detection: DetectionHyper = DetectionHyper()
    prn: PrnHyper = PrnHyper()
    activity: ActivityHyper = ActivityHyper()

    def with_overrides(
        self, part: Part, epochs: int | None, batch_size: int | None, lr: float | None
    ) -> TrainConfig:
        """Apply the CLI's --epochs/--batch-size/--lr to one trainer's section."""
        section = getattr(self, part)
        changes = {
            k: v for k, v in {"epochs": epochs, "batch_size": batch_size, "lr": lr}.items() if v is not None
        }
        return self.model_copy(update={part: section.model_copy(update=changes)}) if changes else self


# The "demo" preset's training: small, CPU-friendly, used to build the committed demo checkpoint.
# From random weights (no ImageNet init reaches these machines) on a CPU budget the seed's 4e-5 step decay
# barely moves in an hour: Adam 5e-4 with warm-up + cosine. Measured (200 steps, 480 px canvas, 256 px
# windows, same data and seed): lr 5e-4 with intermediate weight 1.0 grows joint peaks of 0.82–0.88,
# lr 2e-3 with intermediate weight 0.1 stays at flat maps (peaks 0.08–0.10, at the same loss) — and so did
# a full 10-epoch run of it. The keypoint trainer logs ``val_peak_height`` to catch that early.
DEMO_OVERRIDES: dict[str, dict[str, object]] = {
    "keypoints": {
        "epochs": 10,
        "batch_size": 8,
        "lr": 5e-4,
        "lr_schedule": "cosine",
        "warmup_steps": 150,
        "intermediate_weight": 1.0,
    },
    "detection": {"epochs": 4, "batch_size": 8, "lr": 0.005, "warmup_iters": 50},
    "prn": {"epochs": 12, "batch_size": 64, "real_pose_fraction": 0.5},
    "activity": {"epochs": 40, "batch_size": 32},
    "augment": {"flip_prob": 0.5, "centre_jitter": 0.15},
}


PRESET_BACKBONE_WEIGHTS = {"default": "imagenet", "demo": "none"}


def train_config(preset: str = "default", **values: object) -> TrainConfig:
    """A TrainConfig for ``preset``: "default" = the seed's numbers; "demo" = DEMO_OVERRIDES on top."""
    config = TrainConfig(preset=preset, **values)
    if preset == "demo":
        config = config.model_copy(
            update={
                name: getattr(config, name).model_copy(update=overrides)
                for name, overrides in DEMO_OVERRIDES.items()
            }
        )
    return config
