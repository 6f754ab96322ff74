"""Checkpoints: bit-identical round trip, parts written separately, clear errors for bad files."""

from __future__ import annotations

import pytest
import torch
from model_helpers import force_detections, make_model, small_config

from model.checkpoint import (
    CheckpointError,
    load_checkpoint,
    read_checkpoint,
    save_checkpoint,
    update_checkpoint_part,
)
from model.config import ModelConfig
from model.multiposenet import PARTS, MultiPoseNet


def _outputs(model: MultiPoseNet, images: torch.Tensor) -> list[dict]:
    model.eval()
    return model(images)


def _assert_identical(first: list[dict], second: list[dict]) -> None:
    assert len(first) == len(second)
    for a, b in zip(first, second, strict=True):
        assert a["activity"] == b["activity"]
        for key in ("boxes", "scores", "keypoints", "activity_scores"):
            assert torch.equal(a[key], b[key]), key


def test_round_trip_gives_bit_identical_outputs(tmp_path):
    torch.set_num_threads(1)
    config = small_config(peak_threshold=0.0, prn_assignment="network")
    model = force_detections(make_model(config))
    model.trained_parts = {"keypoint", "prn"}
    images = torch.randn(2, 3, 64, 64) * 50
    before = _outputs(model, images)
    assert before[0]["boxes"].shape[0] > 0  # something to compare

    path = save_checkpoint(tmp_path / "model.pt", model, version="test-1", extra={"epochs": 3})
    loaded, meta = load_checkpoint(path)
    assert meta["version"] == "test-1" and meta["extra"] == {"epochs": 3}
    assert meta["activities"] == list(config.activities) and len(meta["keypoint_names"]) == 17
    assert loaded.config == config and loaded.trained_parts == {"keypoint", "prn"}
    assert not loaded.training
    _assert_identical(before, _outputs(loaded, images))
    for key, value in model.state_dict().items():
        assert torch.equal(value, loaded.state_dict()[key]), key


def test_half_precision_checkpoint_is_close_and_demo_preset_fits_50_mb(tmp_path):
    torch.set_num_threads(1)
    model = MultiPoseNet(ModelConfig.preset("demo"))
    path = save_checkpoint(tmp_path / "demo.pt", model, version="demo-fp16", half=True)
    size_mb = path.stat().st_size / 2**20
    assert size_mb <= 50, f"demo fp16 checkpoint is {size_mb:.1f} MB"
    loaded, meta = load_checkpoint(path)
    assert meta["dtype"] == "float16"
    for key, value in model.state_dict().items():
        restored = loaded.state_dict()[key]
        assert restored.dtype == value.dtype
        assert torch.allclose(restored.float(), value.float(), rtol=1e-3, atol=1e-4), key


def test_parts_are_written_separately(tmp_path):
    config = small_config()
    path = tmp_path / "parts.pt"
    first = make_model(config, seed=1)
    update_checkpoint_part(path, "keypoint", first)  # creates the file
    assert read_checkpoint(path)["trained_parts"] == ["keypoint"]

    second = make_model(config, seed=2)
    update_checkpoint_part(path, "prn", second.part_state_dict("prn"), version="v2")
    loaded, meta = load_checkpoint(path)
    assert meta["version"] == "v2" and loaded.trained_parts == {"keypoint", "prn"}
    for name, source in (("backbone", first), ("prn", second), ("activity", first)):
        for key, value in getattr(source, name).state_dict().items():
            assert torch.equal(getattr(loaded, name).state_dict()[key], value), (name, key)

    other = make_model(small_config(prn_hidden=48))
    with pytest.raises(CheckpointError, match="prn"):
        update_checkpoint_part(path, "prn", other)
    with pytest.raises(ValueError, match="unknown part"):
        update_checkpoint_part(path, "head", first)


def test_missing_corrupt_and_mismatched_files_raise_checkpoint_error(tmp_path):
    config = small_config()
    model = make_model(config)
    good = save_checkpoint(tmp_path / "good.pt", model)

    with pytest.raises(CheckpointError, match="not found"):
        load_checkpoint(tmp_path / "absent.pt")

    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"this is not a checkpoint at all")
    with pytest.raises(CheckpointError, match="cannot read"):
        load_checkpoint(garbage)

    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    with pytest.raises(CheckpointError):
        load_checkpoint(truncated)

    other = tmp_path / "other.pt"
    torch.save({"state_dict": model.state_dict()}, other)
    with pytest.raises(CheckpointError, match="not a posestream checkpoint"):
        load_checkpoint(other)

    payload = read_checkpoint(good)
    payload["config"]["backbone_depth"] = 34  # the weights are a ResNet-18's
    torch.save(payload, tmp_path / "mismatch.pt")
    with pytest.raises(CheckpointError, match="keypoint"):
        load_checkpoint(tmp_path / "mismatch.pt")

    payload = read_checkpoint(good)
    del payload["parts"]["activity"]
    torch.save(payload, tmp_path / "partless.pt")
    with pytest.raises(CheckpointError, match="activity"):
        load_checkpoint(tmp_path / "partless.pt")

    payload = read_checkpoint(good)
    payload["config"]["backbone_depth"] = 19
    torch.save(payload, tmp_path / "badconfig.pt")
    with pytest.raises(CheckpointError, match="config"):
        load_checkpoint(tmp_path / "badconfig.pt")

    assert set(read_checkpoint(good)["parts"]) == set(PARTS)
