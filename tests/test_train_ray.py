"""The trainers under Ray Train: 2 CPU workers (gloo) on a tiny synthetic set keep identical weights,
learn, write a checkpoint ``infer`` loads, and a stopped run resumes from Ray's checkpoint, continuing the
epoch count. Real Ray, real torch process group."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from model.checkpoint import read_checkpoint
from model.train.config import TrainConfig, train_config

pytest.importorskip("ray.train.torch", reason="Ray Train needs ray[train]")
pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]


@pytest.fixture(scope="module")
def ray_session():
    """The session's Ray when a test already started one (tests/serve), else a small one of our own."""
    import ray

    started = not ray.is_initialized()
    if started:
        ray.init(
            num_cpus=2,
            include_dashboard=False,
            object_store_memory=200 * 1024 * 1024,
            log_to_driver=False,
        )
    yield ray
    if started:
        ray.shutdown()


@pytest.fixture(scope="module")
def synth_dir(tmp_path_factory) -> Path:
    from model.data.synth import generate_dataset

    out = tmp_path_factory.mktemp("synth")
    # 8 train images: 4 a worker, two batches of 2
    generate_dataset(out, images=10, seed=6, val_fraction=0.2, size=(128, 128), max_people=2, progress=False)
    return out


def _config(synth_dir: Path, run_dir: Path, epochs: int) -> TrainConfig:
    config = train_config(
        "demo",
        data=synth_dir,
        checkpoint=run_dir / "model.pt",
        out=run_dir / "out",
        storage=str(run_dir / "storage"),
        input_size=96,
        loader_workers=0,
        progress=False,
        seed=1,
    )
    # a fixed view of the images and a constant lr: falling losses measure learning, not augmentation luck
    return config.model_copy(
        update={
            "augment": config.augment.model_copy(
                update={"max_rotation_deg": 0.0, "scale_range": (1.0, 1.0), "flip_prob": 0.0}
            ),
            "keypoints": config.keypoints.model_copy(
                update={"epochs": epochs, "batch_size": 2, "lr": 1e-4, "lr_schedule": "step"}
            ),
        }
    )


@pytest.fixture(scope="module")
def ray_run(ray_session, synth_dir, tmp_path_factory):
    """Keypoints on 2 workers for 3 epochs, then the same run asked for a 4th."""
    from workers.train_ray import RayTrainSettings, run_ray_training

    run_dir = tmp_path_factory.mktemp("ray_run")
    # a sliver of a CPU reserved per worker: the test session's Ray has 2 CPUs, which Serve may hold
    settings = RayTrainSettings(num_workers=2, cpus_per_worker=0.01)
    first = run_ray_training("keypoints", _config(synth_dir, run_dir, epochs=3), settings)
    first_checkpoint = read_checkpoint(run_dir / "model.pt")
    resumed = run_ray_training("keypoints", _config(synth_dir, run_dir, epochs=4), settings)
    return run_dir, first, first_checkpoint, resumed


def test_two_workers_keep_identical_weights_and_learn(ray_run, synth_dir):
    run_dir, first, checkpoint, _ = ray_run
    assert first.epoch == 3 and first.step == 3 * _steps_per_worker(synth_dir, workers=2, batch=2)
    assert [row["replicas_identical"] for row in first.history] == [1.0, 1.0, 1.0]
    losses = [row["loss"] for row in first.history]
    assert losses[-1] < 0.9 * losses[0], losses
    assert checkpoint["trained_parts"] == ["keypoint"]
    assert checkpoint["extra"]["keypoints_epochs"] == 3
    assert (run_dir / "out" / "keypoints_loss.png").stat().st_size > 1000
    # the linear rule: 2 workers, twice the lr
    assert first.history[0]["lr"] == pytest.approx(2e-4)


def _steps_per_worker(synth_dir: Path, workers: int, batch: int) -> int:
    """Steps an epoch when each worker reads its own 1/workers of the train images (padded to equal)."""
    from model.train.coco import CocoKeypoints

    share = -(-len(CocoKeypoints.from_root(synth_dir, "train")) // workers)
    return share // batch if share > batch else 1


def test_the_ray_checkpoint_loads_for_inference(ray_run):
    from model.pipeline import PosePipeline

    run_dir, _, _, _ = ray_run
    pipeline = PosePipeline.load(run_dir / "model.pt", device="cpu")
    image = np.zeros((96, 96, 3), dtype=np.uint8)
    assert isinstance(pipeline.predict([image])[0], list)


def test_a_stopped_ray_run_resumes_and_continues_the_epoch_count(ray_run):
    run_dir, first, checkpoint, resumed = ray_run
    assert resumed.epoch == 4 and resumed.step == first.step // 3 * 4
    assert resumed.history[:3] == first.history  # epochs 1-3 came back from Ray's checkpoint, not re-run
    assert read_checkpoint(run_dir / "model.pt")["extra"]["keypoints_epochs"] == 4
    stored = sorted(p.name for p in (run_dir / "storage" / "keypoints").glob("checkpoint_epoch_*"))
    assert stored == ["checkpoint_epoch_000003", "checkpoint_epoch_000004"]  # the newest 2 kept
    after = read_checkpoint(run_dir / "model.pt")["parts"]["keypoint"]
    before = checkpoint["parts"]["keypoint"]
    assert any(not torch.equal(before[key], after[key]) for key in before)  # epoch 4 trained


def test_cli_runs_a_trainer_on_ray_workers_and_rejects_ray_flags_alone(ray_session, synth_dir, tmp_path):
    import typer
    from typer.testing import CliRunner

    from workers.commands.train import register

    app = typer.Typer()

    @app.callback()
    def _root() -> None:
        pass

    register(app)
    args = ["train", "activity", "--data", str(synth_dir), "--checkpoint", str(tmp_path / "m.pt")]
    args += ["--out", str(tmp_path / "runs"), "--preset", "demo", "--epochs", "2", "--batch-size", "4"]
    args += ["--loader-workers", "0"]
    alone = CliRunner().invoke(app, [*args, "--use-gpu"])
    assert alone.exit_code != 0 and "--num-workers" in alone.output
    # a sliver of a CPU reserved per worker: the test session's Ray has 2 CPUs, which Serve may hold
    result = CliRunner().invoke(app, [*args, "--num-workers", "2", "--cpus-per-worker", "0.01"])
    assert result.exit_code == 0, result.output
    assert "activity: 2 epochs" in result.output
    assert read_checkpoint(tmp_path / "m.pt")["trained_parts"] == ["activity"]
    assert (tmp_path / "runs" / "activity" / "checkpoint_epoch_000002" / "state.pt").is_file()
