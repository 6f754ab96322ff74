"""``load_part``: the PRN and activity parts built alone give what the same parts give in the full model."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from model_helpers import make_model, pose_in_box, small_config

from model.checkpoint import (
    CheckpointError,
    UnsafeCheckpointError,
    load_checkpoint,
    load_part,
    read_checkpoint,
    save_checkpoint,
)
from model.multiposenet import PARTS
from model.part_stage import ActivityPartStage, ResidualPartStage, load_part_stage
from model.predictions import Detections
from model.stages import ActivityStage, ResidualStage

REPO = Path(__file__).resolve().parents[1]


def _scenes(count: int, seed: int = 0) -> list[Detections]:
    """Frames of 0-3 overlapping persons, each joint with a peak per person plus noise peaks."""
    rng = np.random.default_rng(seed)
    scenes = []
    for _ in range(count):
        persons = int(rng.integers(0, 4))
        boxes = []
        peaks = np.zeros((17, 6, 3), np.float32)
        for p in range(persons):
            x, y = rng.uniform(20, 200, 2)
            box = (x, y, x + rng.uniform(60, 120), y + rng.uniform(120, 200))
            boxes.append(box)
            peaks[:, p, :2] = pose_in_box(box) + rng.normal(0, 3, (17, 2))
            peaks[:, p, 2] = rng.uniform(0.3, 1.0, 17)
        peaks[:, 4, :2], peaks[:, 4, 2] = rng.uniform(0, 320, (17, 2)), rng.uniform(0, 0.5, 17)
        scenes.append(
            Detections(
                boxes=np.array(boxes, np.float32).reshape(-1, 4),
                scores=rng.uniform(0.5, 1, persons).astype(np.float32),
                peaks=peaks,
                width=320,
                height=400,
            )
        )
    return scenes


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    model = make_model(small_config(prn_assignment="auto"), seed=3)
    return save_checkpoint(
        tmp_path_factory.mktemp("parts") / "m.pt", model, version="v-parts", trained_parts=PARTS
    )


def test_parts_alone_give_the_full_models_outputs(checkpoint):
    full, meta = load_checkpoint(checkpoint)
    for part in ("prn", "activity"):
        module, part_meta = load_part(checkpoint, part)
        assert part_meta == meta  # the same metadata, weights aside
        expected = {key.split(".", 1)[1]: value for key, value in full.part_state_dict(part).items()}
        assert module.state_dict().keys() == expected.keys()
        assert all(torch.equal(module.state_dict()[key], value) for key, value in expected.items())

    version, residual = load_part_stage(checkpoint, "prn", "cpu")
    assert version == "v-parts" and isinstance(residual, ResidualPartStage)
    whole_residual = ResidualStage(full, "cpu")
    assert residual.use_network == whole_residual.use_network is True  # prn trained, mode auto
    scenes = _scenes(6)
    posed, whole_posed = residual(scenes), whole_residual(scenes)
    assert [len(p) for p in posed] == [d.num_persons for d in scenes] and sum(map(len, posed)) > 0
    for frame, whole_frame in zip(posed, whole_posed, strict=True):
        for person, whole_person in zip(frame, whole_frame, strict=True):
            assert person.bbox == whole_person.bbox
            np.testing.assert_array_equal(person.keypoints, whole_person.keypoints)

    _, activity = load_part_stage(checkpoint, "activity", "cpu")
    assert isinstance(activity, ActivityPartStage) and activity.activities == full.activities
    predicted, whole_predicted = activity(posed), ActivityStage(full, "cpu")(posed)
    for frame, whole_frame in zip(predicted, whole_predicted, strict=True):
        for person, whole_person in zip(frame, whole_frame, strict=True):
            assert person.activity == whole_person.activity
            assert person.activity_scores == pytest.approx(whole_person.activity_scores, abs=1e-6)


def test_load_part_refuses_what_load_checkpoint_refuses(checkpoint, tmp_path):
    with pytest.raises(ValueError, match="cannot be loaded alone"):
        load_part(checkpoint, "keypoint")
    payload = read_checkpoint(checkpoint)
    payload["parts"]["prn"]["detection_head.extra"] = torch.zeros(1)  # another part's key
    bad = tmp_path / "bad.pt"
    torch.save(payload, bad)
    with pytest.raises(CheckpointError, match="part 'prn' does not match"):
        load_part(bad, "prn")
    payload = read_checkpoint(checkpoint)
    payload["extra"] = {"where": Path("/tmp")}  # a Python object: refused, never unpickled
    unsafe = tmp_path / "unsafe.pt"
    torch.save(payload, unsafe)
    with pytest.raises(UnsafeCheckpointError):
        load_part(unsafe, "activity")


_ALONE = """
import asyncio, sys
from workers.serve.residual import PoseResidual
from workers.serve.activity import ActivityClassifier
for deployment in (PoseResidual, ActivityClassifier):
    replica = deployment.func_or_class()
    config = {"max_batch_size": 2, "batch_wait_timeout_s": 0, "drain_grace_s": 0, "device": "cpu"}
    if sys.argv[1] != "default":
        config["checkpoint"] = sys.argv[1]
    asyncio.run(replica.reconfigure(config))
    print(deployment.name, replica.model_versions()["current"])
heavy = ("torchvision", "model.multiposenet", "model.backbone", "model.pipeline")
heavy = sorted(m for m in heavy if m in sys.modules)
print("heavy:", heavy)
"""


@pytest.mark.parametrize("which", ["file", "default"])
def test_residual_and_activity_replicas_load_their_part_only(checkpoint, which):
    """A replica process of either stage holds its part and imports neither torchvision nor the network."""
    source = str(checkpoint) if which == "file" else "default"  # default: demo.pt, its sha256 checked
    done = subprocess.run(
        [sys.executable, "-c", _ALONE, source], cwd=REPO, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr[-3000:]
    lines = done.stdout.strip().splitlines()
    assert lines[-1] == "heavy: []"
    loaded = [line for line in lines if line.startswith(("PoseResidual ", "ActivityClassifier "))]
    assert len(loaded) == 2
    if which == "file":
        assert loaded == ["PoseResidual v-parts", "ActivityClassifier v-parts"]


def test_untrained_preset_still_loads_the_whole_pipeline(monkeypatch):
    """No checkpoint at all: the seeded preset needs the whole network for the same weights as infer."""
    from model import checkpoint as checkpoint_module
    from workers.serve.stage import StageConfig
    from workers.serve.stage import load_part_stage as replica_part

    monkeypatch.setattr(checkpoint_module, "DEFAULT_CHECKPOINT", Path("/nonexistent/demo.pt"))
    config = StageConfig(max_batch_size=1, batch_wait_timeout_s=0, drain_grace_s=0)
    assert replica_part(config, "prn") is None
    with pytest.raises(CheckpointError, match="not found"):
        replica_part(config.model_copy(update={"checkpoint": "/nonexistent/x.pt"}), "prn")
