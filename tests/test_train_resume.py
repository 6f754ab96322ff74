"""One resume mechanism in one process: a run stopped after an epoch continues from its run checkpoint to
the very weights of an uninterrupted run; ``fresh`` starts over; the scaler state travels with it."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from model.checkpoint import read_checkpoint
from model.train.config import TrainConfig, train_config
from model.train.precision import MixedPrecision
from model.train.reporting import LocalReporter
from model.train.trainers import train_activity, train_keypoints

pytestmark = pytest.mark.timeout(300)


@pytest.fixture(scope="module")
def synth_dir(tmp_path_factory) -> Path:
    from model.data.synth import generate_dataset

    out = tmp_path_factory.mktemp("synth")
    generate_dataset(out, images=8, seed=5, val_fraction=0.25, size=(128, 128), max_people=2, progress=False)
    return out


def _config(synth_dir: Path, run_dir: Path, epochs: int, **values) -> TrainConfig:
    config = train_config(
        "demo",
        data=synth_dir,
        checkpoint=run_dir / "model.pt",
        out=run_dir,
        input_size=96,
        loader_workers=0,
        progress=False,
        max_steps_per_epoch=2,
        seed=4,
        **values,
    )
    return config.with_overrides("keypoints", epochs=epochs, batch_size=2, lr=None)


def _keypoint_part(path: Path) -> dict[str, torch.Tensor]:
    return read_checkpoint(path)["parts"]["keypoint"]


def test_a_stopped_keypoint_run_resumes_to_the_uninterrupted_weights(synth_dir, tmp_path):
    torch.set_num_threads(1)  # the same kernels in both runs
    whole = train_keypoints(_config(synth_dir, tmp_path / "whole", epochs=2))

    stopped = train_keypoints(_config(synth_dir, tmp_path / "split", epochs=1))  # "stopped" after epoch 1
    resumed = train_keypoints(_config(synth_dir, tmp_path / "split", epochs=2))
    assert (stopped.epoch, resumed.epoch) == (1, 2)
    assert resumed.step == whole.step == 2 * stopped.step > 0
    assert len(resumed.step_losses) == stopped.step  # only the second epoch ran
    assert resumed.history == whole.history
    a, b = _keypoint_part(tmp_path / "whole" / "model.pt"), _keypoint_part(tmp_path / "split" / "model.pt")
    assert a.keys() == b.keys()
    assert all(torch.equal(a[key], b[key]) for key in a)
    # nothing of the old mechanism is written any more
    assert not list((tmp_path / "split").glob("*.resume.pt"))


def test_fresh_starts_over_and_storage_holds_the_run_checkpoints(synth_dir, tmp_path):
    storage = tmp_path / "store"
    first = train_activity(
        _config(synth_dir, tmp_path / "a", epochs=1, storage=str(storage)).with_overrides(
            "activity", epochs=2, batch_size=4, lr=None
        )
    )
    assert first.epoch == 2
    assert [p.name for p in LocalReporter(storage, "activity").checkpoints()] == [
        "checkpoint_epoch_000001",
        "checkpoint_epoch_000002",
    ]
    assert not (tmp_path / "a" / "activity").exists()  # the run checkpoints went to --storage, not --out
    again = train_activity(
        _config(synth_dir, tmp_path / "a", epochs=1, storage=str(storage), fresh=True).with_overrides(
            "activity", epochs=1, batch_size=4, lr=None
        )
    )
    assert again.epoch == 1 and len(again.history) == 1
    assert [p.name for p in LocalReporter(storage, "activity").checkpoints()] == ["checkpoint_epoch_000001"]


def test_local_reporter_keeps_the_newest_and_ignores_torn_folders(tmp_path):
    reporter = LocalReporter(tmp_path, "prn", keep=2)
    for epoch in (1, 2, 3):
        reporter.report({}, epoch, lambda d, e=epoch: torch.save({"epoch": e}, d / "state.pt"))
    (tmp_path / "prn" / "checkpoint_epoch_000009").mkdir()  # no state.pt: a torn write, never read
    with reporter.latest_checkpoint() as latest:
        assert latest is not None and latest.name == "checkpoint_epoch_000003"
    assert [p.name for p in reporter.checkpoints()] == ["checkpoint_epoch_000002", "checkpoint_epoch_000003"]
    with pytest.raises(ValueError, match="Ray Train"):
        LocalReporter("s3://bucket/runs", "prn")


def test_precision_refuses_fp16_on_cpu_and_round_trips_the_scaler_state():
    with pytest.raises(ValueError, match="CUDA"):
        MixedPrecision("fp16", torch.device("cpu"))
    fp32 = MixedPrecision("fp32", torch.device("cpu"))
    assert fp32.state_dict() == {}  # a disabled scaler: nothing to resume
    fp32.load_state_dict(None)
    layer = torch.nn.Linear(3, 1)
    optimizer = torch.optim.SGD(layer.parameters(), lr=0.1)
    before = layer.weight.detach().clone()
    fp32.step(layer(torch.ones(2, 3)).sum(), optimizer, layer.parameters(), clip_norm=1.0)
    assert not torch.equal(before, layer.weight)
    assert float((before - layer.weight.detach()).norm()) <= 0.1 + 1e-6  # clipped to norm 1, times lr


@pytest.mark.skipif(not torch.cuda.is_available(), reason="fp16 with a gradient scaler needs CUDA")
def test_fp16_scaler_state_round_trips_on_cuda():
    cuda = torch.device("cuda")
    precision = MixedPrecision("fp16", cuda)
    layer = torch.nn.Linear(3, 1).to(cuda)
    optimizer = torch.optim.SGD(layer.parameters(), lr=0.1)
    with precision.autocast():
        loss = layer(torch.ones(2, 3, device=cuda)).sum()
    precision.step(loss, optimizer)
    state = precision.state_dict()
    assert state["scale"] > 0
    again = MixedPrecision("fp16", cuda)
    again.load_state_dict(state)
    assert again.state_dict()["scale"] == state["scale"]
