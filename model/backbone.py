"""ResNet trunk (C2–C5) and the two feature pyramids built on it.

* keypoint FPN: P2–P5 from C2–C5 (the keypoint subnet's input);
* detection FPN: P3–P7 from C3–C5, P6/P7 made as RetinaNet does (``LastLevelP6P7`` on P5).
"""

from __future__ import annotations

from collections import OrderedDict

import torch
from torch import nn
from torchvision.models import resnet
from torchvision.models._utils import IntermediateLayerGetter
from torchvision.ops import FeaturePyramidNetwork
from torchvision.ops.feature_pyramid_network import LastLevelP6P7

_RESNETS = {
    18: resnet.resnet18,
    34: resnet.resnet34,
    50: resnet.resnet50,
    101: resnet.resnet101,
    152: resnet.resnet152,
}


class ResNetBackbone(nn.Module):
    """torchvision ResNet (``weights=None``) without its classifier; returns C2–C5."""

    def __init__(self, depth: int) -> None:
        super().__init__()
        if depth not in _RESNETS:
            raise ValueError(f"backbone depth must be one of {sorted(_RESNETS)}, got {depth}")
        self.depth = depth
        trunk = _RESNETS[depth](weights=None)
        self.body = IntermediateLayerGetter(
            trunk, return_layers={"layer1": "c2", "layer2": "c3", "layer3": "c4", "layer4": "c5"}
        )
        expansion = 1 if depth < 50 else 4
        self.out_channels = [64 * expansion, 128 * expansion, 256 * expansion, 512 * expansion]

    def forward(self, images: torch.Tensor) -> OrderedDict[str, torch.Tensor]:
        # images (B, 3, H, W) → c2 (B, C, H/4, W/4) … c5 (B, C', H/32, W/32)
        return self.body(images)


class KeypointFPN(nn.Module):
    """P2–P5 (``channels`` each) from C2–C5."""

    def __init__(self, in_channels: list[int], channels: int) -> None:
        super().__init__()
        self.fpn = FeaturePyramidNetwork(in_channels, channels)

    def forward(self, features: OrderedDict[str, torch.Tensor]) -> list[torch.Tensor]:
        inputs = OrderedDict((name, features[name]) for name in ("c2", "c3", "c4", "c5"))
        return list(self.fpn(inputs).values())  # [P2, P3, P4, P5]


class DetectionFPN(nn.Module):
    """P3–P7 (``channels`` each) from C3–C5; P6 = conv(P5, stride 2), P7 = conv(ReLU(P6), stride 2)."""

    def __init__(self, in_channels: list[int], channels: int) -> None:
        super().__init__()
        self.fpn = FeaturePyramidNetwork(
            in_channels[1:], channels, extra_blocks=LastLevelP6P7(channels, channels)
        )

    def forward(self, features: OrderedDict[str, torch.Tensor]) -> list[torch.Tensor]:
        inputs = OrderedDict((name, features[name]) for name in ("c3", "c4", "c5"))
        return list(self.fpn(inputs).values())  # [P3, P4, P5, P6, P7]
