"""ImageNet initialisation (--backbone-weights), offline: state dict files land tensor by tensor, files of
another depth or shape are refused by name, and `imagenet` without the network fails at once, clearly."""

from __future__ import annotations

import pytest
import torch
from torchvision.models import resnet

from model.backbone import ResNetBackbone
from model.pretrained import (
    IMAGENET_WEIGHTS,
    BackboneWeightsError,
    imagenet_state_dict,
    initialise_backbone,
    resnet_depth_of,
)
from model.train.config import train_config
from model.train.loop import load_or_build_model

CLOSED_PORT_URL = "http://127.0.0.1:9/weights/resnet18-f37072fd.pth"  # port 9: connection refused


def resnet_file(tmp_path, depth: int, seed: int = 0):
    torch.manual_seed(seed)
    state = getattr(resnet, f"resnet{depth}")(weights=None).state_dict()
    path = tmp_path / f"resnet{depth}.pth"
    torch.save(state, path)
    return path, state


def test_a_state_dict_file_lands_in_the_trunk_tensor_by_tensor(tmp_path):
    path, state = resnet_file(tmp_path, 18)
    backbone = ResNetBackbone(18)
    before = backbone.body.conv1.weight.detach().clone()
    loaded = initialise_backbone(backbone, str(path))
    trunk = backbone.body.state_dict()
    assert loaded.tensors == len(trunk) == len([k for k in state if not k.startswith("fc.")])
    assert loaded.skipped == ("fc.bias", "fc.weight")
    for key, tensor in trunk.items():
        assert torch.equal(tensor, state[key]), key
    assert not torch.equal(before, trunk["conv1.weight"])  # it really changed


@pytest.mark.parametrize("depth", [18, 34, 50])
def test_depth_is_read_from_the_blocks(tmp_path, depth):
    assert resnet_depth_of(resnet_file(tmp_path, depth)[1]) == depth


def test_a_file_of_another_depth_is_refused_naming_both(tmp_path):
    path, _ = resnet_file(tmp_path, 34)
    with pytest.raises(BackboneWeightsError, match="ResNet-34, the backbone is a ResNet-18"):
        initialise_backbone(ResNetBackbone(18), str(path))


def test_a_tensor_of_another_shape_is_refused_by_key(tmp_path):
    _, state = resnet_file(tmp_path, 18)
    state["layer2.0.conv1.weight"] = torch.zeros(128, 64, 5, 5)
    broken = tmp_path / "broken.pth"
    torch.save(state, broken)
    with pytest.raises(
        BackboneWeightsError, match=r"shape mismatch \['layer2.0.conv1.weight: file \(128, 64, 5, 5\)"
    ):
        initialise_backbone(ResNetBackbone(18), str(broken))


def test_missing_files_and_non_state_dicts_are_refused(tmp_path):
    with pytest.raises(BackboneWeightsError, match="no such file"):
        initialise_backbone(ResNetBackbone(18), str(tmp_path / "nope.pth"))
    junk = tmp_path / "junk.pth"
    junk.write_bytes(b"not a torch file")
    with pytest.raises(BackboneWeightsError, match="not a torch state dict"):
        initialise_backbone(ResNetBackbone(18), str(junk))


def test_none_leaves_the_random_initialisation():
    backbone = ResNetBackbone(18)
    before = {k: v.clone() for k, v in backbone.body.state_dict().items()}
    assert initialise_backbone(backbone, "none") is None
    assert all(torch.equal(before[k], v) for k, v in backbone.body.state_dict().items())


def test_imagenet_offline_fails_at_once_naming_the_ways_on(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))  # an empty hub cache
    with pytest.raises(BackboneWeightsError) as raised:
        imagenet_state_dict(18, url=CLOSED_PORT_URL)
    message = str(raised.value)
    assert "--backbone-weights PATH" in message and "--backbone-weights none" in message


def test_imagenet_comes_from_the_hub_cache_without_the_network(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    _, state = resnet_file(tmp_path, 18, seed=5)
    cache = tmp_path / "torch" / "hub" / "checkpoints"
    cache.mkdir(parents=True)
    torch.save(state, cache / "resnet18-f37072fd.pth")  # the enum's file name
    assert IMAGENET_WEIGHTS[18].url.endswith("/resnet18-f37072fd.pth")
    backbone = ResNetBackbone(18)
    loaded = initialise_backbone(backbone, "imagenet", url=CLOSED_PORT_URL)  # the url is never contacted
    assert loaded.source == "ImageNet ResNet-18"
    assert torch.equal(
        backbone.body.state_dict()["layer3.1.bn2.running_var"], state["layer3.1.bn2.running_var"]
    )


def test_a_new_training_network_starts_from_the_given_trunk(tmp_path):
    path, state = resnet_file(tmp_path, 18, seed=9)  # the demo preset's depth
    config = train_config("demo", checkpoint=tmp_path / "model.pt", backbone_weights=str(path))
    model = load_or_build_model(config)
    assert torch.equal(
        model.backbone.body.state_dict()["layer4.1.conv2.weight"], state["layer4.1.conv2.weight"]
    )
    # the demo preset's own default is a random start (drawn people, no ImageNet needed)
    fresh = load_or_build_model(train_config("demo", checkpoint=tmp_path / "other.pt"))
    assert not torch.equal(
        fresh.backbone.body.state_dict()["layer4.1.conv2.weight"], state["layer4.1.conv2.weight"]
    )
