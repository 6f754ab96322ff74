"""ImageNet initialisation of the ResNet trunk (the seed starts from an ImageNet-trained backbone).

``--backbone-weights`` takes ``imagenet`` (torchvision's weights for the chosen depth, downloaded by
torch.hub into its cache when the machine is online), a ``PATH`` to a torchvision ResNet state dict, or
``none`` (random initialisation). Offline, ``imagenet`` fails at once, before any training, naming the
two ways on; it never falls back to a silent random start. A state dict must fit the trunk tensor by
tensor: a ResNet of another depth, or any shape that differs, is refused with the keys that differ.
"""

from __future__ import annotations

import socket
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

import torch
from torchvision.models import (
    ResNet18_Weights,
    ResNet34_Weights,
    ResNet50_Weights,
    ResNet101_Weights,
    ResNet152_Weights,
)

from model.backbone import ResNetBackbone

IMAGENET_WEIGHTS = {
    18: ResNet18_Weights.IMAGENET1K_V1,
    34: ResNet34_Weights.IMAGENET1K_V1,
    50: ResNet50_Weights.IMAGENET1K_V2,
    101: ResNet101_Weights.IMAGENET1K_V2,
    152: ResNet152_Weights.IMAGENET1K_V2,
}
_BLOCKS = {(2, 2, 2, 2, False): 18, (3, 4, 6, 3, False): 34, (3, 4, 6, 3, True): 50, (3, 4, 23, 3, True): 101}
_BLOCKS[(3, 8, 36, 3, True)] = 152
CONNECT_TIMEOUT_S = 3.0


class BackboneWeightsError(ValueError):
    """The requested backbone initialisation cannot be had (offline, missing file, wrong network)."""


@dataclass(frozen=True)
class TrunkLoad:
    """What an initialisation put into the trunk."""

    source: str
    tensors: int  # state-dict entries copied into the trunk
    skipped: tuple[str, ...]  # the classifier's (fc.*), which the trunk does not have


def resnet_depth_of(state_dict: dict[str, torch.Tensor]) -> int | None:
    """The torchvision ResNet depth a state dict comes from (by its blocks per stage), None if not one."""
    blocks = []
    for stage in range(1, 5):
        indices = {int(key.split(".")[1]) for key in state_dict if key.startswith(f"layer{stage}.")}
        blocks.append(max(indices) + 1 if indices else 0)
    bottleneck = any(key.endswith("conv3.weight") for key in state_dict)
    return _BLOCKS.get((*blocks, bottleneck))


def load_trunk_weights(
    backbone: ResNetBackbone, state_dict: dict[str, torch.Tensor], source: str
) -> TrunkLoad:
    """Copy a torchvision ResNet state dict into the trunk, refusing any key or shape that does not fit."""
    if not isinstance(state_dict, dict) or not all(isinstance(v, torch.Tensor) for v in state_dict.values()):
        raise BackboneWeightsError(f"{source}: not a state dict of tensors")
    trunk = backbone.body.state_dict()
    wanted = {key: value for key, value in state_dict.items() if not key.startswith("fc.")}
    depth = resnet_depth_of(state_dict)
    if depth is not None and depth != backbone.depth:
        raise BackboneWeightsError(
            f"{source} holds a ResNet-{depth}, the backbone is a ResNet-{backbone.depth} "
            f"(choose --backbone-weights for depth {backbone.depth}, or change the preset's depth)"
        )
    missing = sorted(set(trunk) - set(wanted))
    unexpected = sorted(set(wanted) - set(trunk))
    shapes = sorted(
        f"{key}: file {tuple(wanted[key].shape)} vs trunk {tuple(trunk[key].shape)}"
        for key in set(trunk) & set(wanted)
        if wanted[key].shape != trunk[key].shape
    )
    if missing or unexpected or shapes:
        parts = [
            f"missing {missing[:5]}" if missing else "",
            f"unexpected {unexpected[:5]}" if unexpected else "",
            f"shape mismatch {shapes[:5]}" if shapes else "",
        ]
        raise BackboneWeightsError(
            f"{source} does not fit the ResNet-{backbone.depth} trunk: " + "; ".join(p for p in parts if p)
        )
    backbone.body.load_state_dict(wanted, strict=True)
    skipped = tuple(sorted(key for key in state_dict if key.startswith("fc.")))
    return TrunkLoad(source=source, tensors=len(wanted), skipped=skipped)


def _reachable(url: str, timeout_s: float) -> bool:
    parsed = urlparse(url)
    port = parsed.port or (443 if parsed.scheme == "https" else 80)
    try:
        with socket.create_connection((parsed.hostname or "", port), timeout=timeout_s):
            return True
    except OSError:
        return False


def imagenet_state_dict(depth: int, url: str | None = None) -> dict[str, torch.Tensor]:
    """torchvision's ImageNet weights for ``depth``: from torch.hub's cache, else downloaded. ``url``
    overrides the enum's (a mirror)."""
    if depth not in IMAGENET_WEIGHTS:
        raise BackboneWeightsError(f"no ImageNet weights for ResNet-{depth}")
    url = url or IMAGENET_WEIGHTS[depth].url
    cached = Path(torch.hub.get_dir()) / "checkpoints" / Path(urlparse(url).path).name
    if cached.is_file():
        return torch.load(cached, map_location="cpu", weights_only=True)
    if not _reachable(url, CONNECT_TIMEOUT_S):
        raise BackboneWeightsError(
            f"--backbone-weights imagenet needs {url} (not in the cache {cached.parent}) and this "
            "machine cannot reach it. Offline, pass --backbone-weights PATH (a torchvision ResNet state "
            f"dict file, e.g. copied from an online machine's {cached.parent}) or --backbone-weights none "
            "(random init)."
        )
    return torch.hub.load_state_dict_from_url(url, map_location="cpu", progress=False, weights_only=True)


def initialise_backbone(backbone: ResNetBackbone, weights: str, url: str | None = None) -> TrunkLoad | None:
    """Apply ``--backbone-weights``: "imagenet", "none" or a file path. None when nothing was loaded."""
    if weights == "none":
        return None
    if weights == "imagenet":
        return load_trunk_weights(
            backbone, imagenet_state_dict(backbone.depth, url), f"ImageNet ResNet-{backbone.depth}"
        )
    path = Path(weights)
    if not path.is_file():
        raise BackboneWeightsError(f"--backbone-weights {weights}: no such file (or use imagenet / none)")
    try:
        state_dict = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any unreadable file gets the same clear message
        raise BackboneWeightsError(f"{path}: not a torch state dict file ({exc})") from exc
    return load_trunk_weights(backbone, state_dict, str(path))
