"""Training targets: keypoint heatmaps + mask W + joint weights, RetinaNet person boxes.

PRN and activity samples live in ``model/train/samples.py``.

The heatmap targets use ``model.decode.render_keypoint_targets`` (the same pixel ↔ heatmap mapping the
peak decoder inverts): one Gaussian of σ = ``ModelConfig.heatmap_sigma`` heatmap pixels per labelled joint
of every person, max over people, plus the background channel 1 − max. W is 0 on every heatmap cell that
touches a crowd or a person without keypoint labels (their segmentation, else box), 1 elsewhere.
"""

from __future__ import annotations

from typing import Any, Literal

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

from model.decode import HEATMAP_STRIDE, render_keypoint_targets
from model.train.augment import AugmentConfig, AugmentedSample, PersonCropAugment
from model.train.coco import CocoKeypoints

JointWeightMode = Literal["all", "labelled"]


def heatmap_mask(ignore_mask: torch.Tensor, stride: int = HEATMAP_STRIDE) -> torch.Tensor:
    """(H, W) bool "ignore" at canvas resolution → W (1, H/stride, W/stride) float: 0 on any touched cell."""
    touched = F.max_pool2d(ignore_mask[None, None].float(), kernel_size=stride, stride=stride)
    return 1.0 - touched[0]


def joint_weights(keypoints: torch.Tensor, mode: JointWeightMode = "all") -> torch.Tensor:
    """(17,) per-joint loss weights. "all": every joint channel counts (absent joints teach "no peak here");
    "labelled": only joints some person in the crop has labelled (for sparsely labelled data)."""
    num_joints = keypoints.shape[1] if keypoints.ndim == 3 else 17
    if mode == "all" or keypoints.numel() == 0:
        return torch.ones(num_joints) if mode == "all" else torch.zeros(num_joints)
    if mode == "labelled":
        return (keypoints[..., 2] > 0).any(dim=0).float()
    raise ValueError(f"joint weight mode must be 'all' or 'labelled', got {mode!r}")


def detection_boxes(sample: AugmentedSample, min_side: float = 2.0) -> torch.Tensor:
    """(N, 4) person boxes for the focal-loss head: not crowd, at least ``min_side`` pixels each way.
    Crowds are simply left out (torchvision's RetinaNet has no ignore label)."""
    boxes = sample.boxes
    sides = boxes[:, 2:] - boxes[:, :2]
    keep = (
        ~sample.iscrowd & (sides >= min_side).all(dim=1) if len(boxes) else torch.zeros(0, dtype=torch.bool)
    )
    return boxes[keep].float().reshape(-1, 4)


def keypoint_targets(
    sample: AugmentedSample,
    sigma: float,
    stride: int = HEATMAP_STRIDE,
    joint_weight_mode: JointWeightMode = "all",
    render_heatmaps: bool = True,
) -> dict[str, torch.Tensor]:
    """heatmaps (18, H/s, W/s) (when asked), mask (1, H/s, W/s), joint_weights (17,), and the labelled
    people's keypoints (P, 17, 3) of one augmented sample."""
    height, width = sample.image.shape[-2:]
    if height % stride or width % stride:
        raise ValueError(f"input {height}x{width} is not a multiple of the heatmap stride {stride}")
    labelled_points = sample.keypoints[sample.labelled] if len(sample.keypoints) else sample.keypoints
    labelled_points = labelled_points.reshape(-1, 17, 3).float()
    targets = {
        "mask": heatmap_mask(sample.ignore_mask, stride),
        "joint_weights": joint_weights(labelled_points, joint_weight_mode),
        "labelled_keypoints": labelled_points,
    }
    if render_heatmaps:
        targets["heatmaps"] = render_keypoint_targets(
            labelled_points, (height // stride, width // stride), sigma, stride
        )
    return targets


class PoseTrainingSet(Dataset):
    """Augmented crops with their keypoint and detection targets (what the keypoints/detection trainers eat).

    Randomness comes from torch's RNG (seeded per DataLoader worker), so ``torch.manual_seed`` makes runs
    repeatable and every epoch sees new augmentations.
    """

    def __init__(
        self,
        source: CocoKeypoints,
        augment: AugmentConfig,
        sigma: float,
        stride: int = HEATMAP_STRIDE,
        joint_weight_mode: JointWeightMode = "all",
        render_heatmaps: bool = True,
    ) -> None:
        self.source = source
        self.render_heatmaps = render_heatmaps  # the model renders its own on the device while training
        self.augment_config = augment
        self.sigma = sigma
        self.stride = stride
        self.joint_weight_mode = joint_weight_mode

    def __len__(self) -> int:
        return len(self.source)

    def sample(self, index: int) -> AugmentedSample:
        seed = int(torch.randint(0, 2**62, ()).item())
        return PersonCropAugment(self.augment_config, np.random.default_rng(seed))(self.source[index])

    def __getitem__(self, index: int) -> dict[str, Any]:
        sample = self.sample(index)
        targets = keypoint_targets(
            sample, self.sigma, self.stride, self.joint_weight_mode, self.render_heatmaps
        )
        return {
            "image": sample.image,
            **targets,
            "boxes": detection_boxes(sample, self.augment_config.min_box_side),
            "keypoints": sample.keypoints,
        }


def collate_pose_batch(items: list[dict[str, Any]]) -> dict[str, Any]:
    """Stack the dense tensors; boxes and keypoints stay per-image lists."""
    return {
        "images": torch.stack([item["image"] for item in items]),  # (B, 3, H, W)
        **({"heatmaps": torch.stack([item["heatmaps"] for item in items])} if "heatmaps" in items[0] else {}),
        "labelled_keypoints": [item["labelled_keypoints"] for item in items],  # B × (P', 17, 3)
        "mask": torch.stack([item["mask"] for item in items]),  # (B, 1, h, w)
        "joint_weights": torch.stack([item["joint_weights"] for item in items]),  # (B, 17)
        "boxes": [item["boxes"] for item in items],  # B × (N, 4)
        "keypoints": [item["keypoints"] for item in items],  # B × (P, 17, 3)
    }
