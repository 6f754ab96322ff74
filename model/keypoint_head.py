"""Keypoint subnet of MultiPoseNet, with intermediate supervision and its masked L2 loss."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from model.predictions import NUM_KEYPOINTS


def _conv3x3(in_channels: int, out_channels: int) -> nn.Conv2d:
    return nn.Conv2d(in_channels, out_channels, kernel_size=3, padding=1)


class KeypointSubnet(nn.Module):
    """D_i = φ(φ(P_i)) for P2–P5 (two 3×3 convs + ReLU), D3–D5 upsampled ×2/×4/×8 to P2's size,
    concatenated (4·width, 512 by default), smoothed by a 3×3 conv + ReLU, then a 1×1 conv to
    17 joints + 1 background channel. Each P_i also gets a conv with 17 filters (Z_i, intermediate
    supervision), resized to the output's shape.
    """

    def __init__(self, fpn_channels: int, width: int = 128, num_keypoints: int = NUM_KEYPOINTS) -> None:
        super().__init__()
        self.num_keypoints = num_keypoints
        self.level_blocks = nn.ModuleList(
            nn.Sequential(
                _conv3x3(fpn_channels, width),
                nn.ReLU(inplace=True),
                _conv3x3(width, width),
                nn.ReLU(inplace=True),
            )
            for _ in range(4)
        )
        self.smooth = nn.Sequential(_conv3x3(4 * width, 4 * width), nn.ReLU(inplace=True))
        self.predict = nn.Conv2d(4 * width, num_keypoints + 1, kernel_size=1)
        self.intermediate = nn.ModuleList(_conv3x3(fpn_channels, num_keypoints) for _ in range(4))
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
                nn.init.zeros_(module.bias)
        for module in [self.predict, *self.intermediate]:  # small outputs at the start (Simple Baselines)
            nn.init.normal_(module.weight, std=0.001)

    def forward(self, pyramid: list[torch.Tensor]) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """pyramid [P2..P5] → heatmaps (B, 18, H/4, W/4) and, in training, the four Z_i (B, 17, H/4, W/4)."""
        if len(pyramid) != 4:
            raise ValueError(f"the keypoint subnet takes P2–P5 (4 levels), got {len(pyramid)}")
        size = pyramid[0].shape[-2:]
        levels = []
        for level, block in zip(pyramid, self.level_blocks, strict=True):
            feature = block(level)
            if feature.shape[-2:] != size:  # ×2, ×4, ×8 (nearest, as Keras' UpSampling2D)
                feature = F.interpolate(feature, size=size, mode="nearest")
            levels.append(feature)
        heatmaps = self.predict(self.smooth(torch.cat(levels, dim=1)))
        intermediates: list[torch.Tensor] = []
        if self.training:
            for level, conv in zip(pyramid, self.intermediate, strict=True):
                z = conv(level)
                if z.shape[-2:] != size:
                    z = F.interpolate(z, size=size, mode="bilinear", align_corners=False)
                intermediates.append(z)
        return heatmaps, intermediates

    def loss(
        self,
        heatmaps: torch.Tensor,
        intermediates: list[torch.Tensor],
        targets: torch.Tensor,
        mask: torch.Tensor | None = None,
        joint_weights: torch.Tensor | None = None,
    ) -> dict[str, torch.Tensor]:
        """Masked L2: Σ_i ‖W·(Z_i − S)‖² + ‖W·(H_p − S)‖², as a per-pixel mean.

        targets (B, 18, H, W); mask W (B, 1, H, W), 0 where a person is unlabelled (default 1);
        joint_weights (B, 17): per-joint target weight as in Simple Baselines (e.g. 0 for a joint nobody in
        the image has labelled), applied to the joint channels; the background channel weighs 1.
        """
        if targets.shape != heatmaps.shape:
            raise ValueError(f"targets {tuple(targets.shape)} do not match heatmaps {tuple(heatmaps.shape)}")
        batch = heatmaps.shape[0]
        if mask is None:
            mask = heatmaps.new_ones((batch, 1, *heatmaps.shape[-2:]))
        if joint_weights is None:
            joint_weights = heatmaps.new_ones((batch, self.num_keypoints))
        channel_weights = torch.cat([joint_weights, joint_weights.new_ones((batch, 1))], dim=1)[
            ..., None, None
        ]
        weights = mask * channel_weights  # (B, 18, H, W)
        final = (weights * (heatmaps - targets) ** 2).mean()
        losses = {"keypoint_heatmap": final}
        if intermediates:
            joint_w, joint_t = weights[:, : self.num_keypoints], targets[:, : self.num_keypoints]
            losses["keypoint_intermediate"] = sum(
                (joint_w * (z - joint_t) ** 2).mean() for z in intermediates
            )
        return losses
