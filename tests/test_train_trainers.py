"""The four trainers on a tiny synthetic set: losses fall, resume continues, detection leaves the keypoint
path bit-identical, and the checkpoint they write loads in the inference pipeline."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from model.checkpoint import load_checkpoint, read_checkpoint
from model.config import ModelConfig
from model.train.augment import AugmentConfig
from model.train.coco import CocoKeypoints
from model.train.config import TrainConfig, train_config
from model.train.samples import ActivityPoseSet, PrnTrainingSet
from model.train.targets import PoseTrainingSet, collate_pose_batch
from model.train.trainers import (
    freeze_keypoint_path,
    train_activity,
    train_detection,
    train_keypoints,
    train_prn,
)

pytestmark = pytest.mark.timeout(300)


@pytest.fixture(scope="module")
def synth_dir(tmp_path_factory) -> Path:
    from model.data.synth import generate_dataset

    out = tmp_path_factory.mktemp("synth")
    generate_dataset(out, images=10, seed=2, val_fraction=0.2, size=(128, 128), max_people=3, progress=False)
    return out


@pytest.fixture(autouse=True)
def _threads():
    previous = torch.get_num_threads()
    torch.set_num_threads(2)
    yield
    torch.set_num_threads(previous)


def _config(synth_dir: Path, run_dir: Path, **values) -> TrainConfig:
    config = train_config(
        "demo",
        data=synth_dir,
        checkpoint=run_dir / "model.pt",
        out=run_dir,
        input_size=96,
        loader_workers=0,
        progress=False,
        **values,
    )
    # a fixed view of the images, so that falling losses measure learning, not augmentation luck; a
    # constant lr (the demo's warm-up spans more steps than these runs take)
    return config.model_copy(
        update={
            "augment": config.augment.model_copy(
                update={
                    "max_rotation_deg": 0.0,
                    "scale_range": (1.0, 1.0),
                    "flip_prob": 0.0,
                    "centre_jitter": 0.0,
                }
            ),
            "keypoints": config.keypoints.model_copy(
                update={"lr_schedule": "step", "lr": 1e-4, "intermediate_weight": 1.0}
            ),
        }
    )


def _falls(losses: list[float], tail: int = 2) -> bool:
    return float(np.mean(losses[-tail:])) < 0.8 * losses[0]


@pytest.fixture(scope="module")
def keypoint_run(synth_dir, tmp_path_factory):
    """Keypoints for one epoch, then resumed for a second: (run dir, first state, resumed state)."""
    run_dir = tmp_path_factory.mktemp("run")
    base = _config(synth_dir, run_dir, max_steps_per_epoch=4)
    first_cfg = base.with_overrides("keypoints", epochs=1, batch_size=2, lr=None)
    first = train_keypoints(first_cfg)
    first_state = run_dir / "keypoints" / "checkpoint_epoch_000001" / "state.pt"
    resume_file = torch.load(first_state, weights_only=True)
    adam_steps = {int(s["step"]) for s in resume_file["optimizer"]["state"].values()}
    # the same run asked for a second epoch: it continues from its latest run checkpoint on its own
    second = train_keypoints(first_cfg.with_overrides("keypoints", epochs=2, batch_size=None, lr=None))
    return run_dir, first, second, adam_steps


def test_keypoint_loss_falls_and_resume_continues(keypoint_run):
    run_dir, first, second, adam_steps = keypoint_run
    assert first.epoch == 1 and first.step == 4 and adam_steps == {4}
    assert _falls(first.step_losses)
    # resumed: only epoch 2 ran, the step counter and Adam's state carried on
    assert second.epoch == 2 and second.step == 8 and len(second.step_losses) == 4
    assert [row["epoch"] for row in second.history] == [1.0, 2.0]
    assert second.history[0] == first.history[0]
    resumed = torch.load(run_dir / "keypoints" / "checkpoint_epoch_000002" / "state.pt", weights_only=True)
    assert {int(s["step"]) for s in resumed["optimizer"]["state"].values()} == {8}
    assert sorted(p.name for p in (run_dir / "keypoints").iterdir()) == [
        "checkpoint_epoch_000001",
        "checkpoint_epoch_000002",
    ]
    assert float(np.mean(second.step_losses)) < first.step_losses[0]
    assert (run_dir / "keypoints_loss.png").stat().st_size > 1000
    assert read_checkpoint(run_dir / "model.pt")["trained_parts"] == ["keypoint"]


def _keypoint_outputs(model, images: torch.Tensor) -> torch.Tensor:
    model.eval()
    with torch.no_grad():
        heatmaps, _ = model.keypoint_head(model.keypoint_fpn(model.backbone(images)))
    return heatmaps


def _fixed_detection_batch(synth_dir: Path) -> dict:
    source = CocoKeypoints.from_root(synth_dir, "train")
    dataset = PoseTrainingSet(source, AugmentConfig(input_size=(96, 96), enabled=False), sigma=2.0)
    return collate_pose_batch([dataset[i] for i in range(4)])


def _detection_loss(model, batch: dict) -> float:
    model.train()
    freeze_keypoint_path(model)
    with torch.no_grad():
        losses = model(batch["images"], [{"boxes": boxes} for boxes in batch["boxes"]])
    return float(losses["detection_classification"] + losses["detection_box"])


def test_detection_trains_on_a_frozen_keypoint_path(keypoint_run, synth_dir):
    run_dir = keypoint_run[0]
    images = torch.randn(2, 3, 96, 96, generator=torch.Generator().manual_seed(0)) * 50
    before_model, _ = load_checkpoint(run_dir / "model.pt")
    before = _keypoint_outputs(before_model, images)
    detection_before = before_model.part_state_dict("detection")
    fixed = _fixed_detection_batch(synth_dir)
    loss_before = _detection_loss(before_model, fixed)

    config = _config(synth_dir, run_dir)
    config = config.model_copy(
        update={
            "detection": config.detection.model_copy(
                update={"epochs": 6, "batch_size": 2, "lr": 0.01, "warmup_iters": 0, "lr_drops": ()}
            )
        }
    )
    state = train_detection(config)
    assert state.epoch == 6 and state.step == 24

    after_model, meta = load_checkpoint(run_dir / "model.pt")
    assert _detection_loss(after_model, fixed) < 0.9 * loss_before
    assert torch.equal(_keypoint_outputs(after_model, images), before)  # bit-identical
    for key, value in before_model.part_state_dict("keypoint").items():  # BatchNorm statistics included
        assert torch.equal(after_model.part_state_dict("keypoint")[key], value), key
    changed = [
        k
        for k, v in after_model.part_state_dict("detection").items()
        if not torch.equal(v, detection_before[k])
    ]
    assert changed
    assert set(meta["trained_parts"]) == {"keypoint", "detection"}


def test_keypoint_head_trains_on_a_frozen_trunk(keypoint_run, synth_dir, tmp_path):
    """``freeze_backbone``: the keypoint FPN + subnet learn, the ResNet trunk (BatchNorm statistics too)
    stays bit-identical — the features a trained detector reads do not move."""
    import shutil

    shutil.copy(keypoint_run[0] / "model.pt", tmp_path / "model.pt")
    before, _ = load_checkpoint(tmp_path / "model.pt")
    config = _config(synth_dir, tmp_path, max_steps_per_epoch=4)
    config = config.with_overrides("keypoints", epochs=1, batch_size=2, lr=None)
    frozen = config.model_copy(
        update={"keypoints": config.keypoints.model_copy(update={"freeze_backbone": True})}
    )
    state = train_keypoints(frozen)
    assert state.step == 4
    after, _ = load_checkpoint(tmp_path / "model.pt")
    for key, value in before.backbone.state_dict().items():
        assert torch.equal(after.backbone.state_dict()[key], value), key
    for name in ("keypoint_fpn", "keypoint_head"):
        old, new = getattr(before, name).state_dict(), getattr(after, name).state_dict()
        assert any(not torch.equal(new[key], old[key]) for key in old), name
    assert float(np.mean(state.step_losses[-2:])) < state.step_losses[0]


@torch.no_grad()
def _prn_loss(model, dataset) -> float:
    """BCE of the PRN over every training person, dropout off."""
    model.prn.eval()
    inputs, targets = (torch.stack(t) for t in zip(*[dataset[i] for i in range(len(dataset))], strict=True))
    return float(model.prn.loss(model.prn(inputs), targets)["prn"])


def _activity_loss(model, dataset) -> float:
    """Cross-entropy of the activity MLP over every training pose, BatchNorm/dropout in eval mode."""
    model.activity.eval()
    features, labels = (torch.stack([torch.as_tensor(v) for v in t]) for t in zip(*dataset, strict=True))
    with torch.no_grad():
        return float(model.activity.loss(model.activity(features), labels.long())["activity"])


def test_prn_and_activity_losses_fall_and_the_checkpoint_predicts(keypoint_run, synth_dir):
    run_dir = keypoint_run[0]
    prn_config = _config(synth_dir, run_dir).with_overrides("prn", epochs=3, batch_size=2, lr=3e-3)
    prn_set = PrnTrainingSet(
        CocoKeypoints.from_root(synth_dir, "train"), load_checkpoint(run_dir / "model.pt")[0].config
    )
    prn_before = _prn_loss(load_checkpoint(run_dir / "model.pt")[0], prn_set)
    prn_state = train_prn(prn_config)
    assert prn_state.epoch == 3
    prn_after = _prn_loss(load_checkpoint(run_dir / "model.pt")[0], prn_set)
    assert prn_after < 0.95 * prn_before

    # Judged on the whole training set, not on steps of 4 poses (too noisy to compare).
    poses = ActivityPoseSet.from_coco(CocoKeypoints.from_root(synth_dir, "train"), prn_set.config.activities)
    poses = [poses[i] for i in range(len(poses))]
    activity_before = _activity_loss(load_checkpoint(run_dir / "model.pt")[0], poses)
    activity_config = _config(synth_dir, run_dir).with_overrides("activity", epochs=12, batch_size=4, lr=None)
    activity_state = train_activity(activity_config)
    assert activity_state.epoch == 12
    assert _activity_loss(load_checkpoint(run_dir / "model.pt")[0], poses) < 0.9 * activity_before
    assert "val_accuracy" in activity_state.history[-1]

    from model.pipeline import PosePipeline

    pipeline = PosePipeline.load(run_dir / "model.pt", device="cpu")
    assert {"keypoint", "prn", "activity"} <= pipeline.trained_parts  # + detection when run in order
    image = np.full((120, 160, 3), 127, np.uint8)
    predictions = pipeline.predict([image, image])
    assert len(predictions) == 2
    for person in predictions[0]:
        assert person.keypoints.shape == (17, 3) and person.activity in pipeline.activities


def test_labelled_image_folder_becomes_activity_poses(keypoint_run, tmp_path):
    """The seed's activity path: FOLDER/<activity>/*.jpg → the pose model → a poses file."""
    import cv2

    from model.train.samples import ActivityPoseSet, extract_poses

    for activity in ("walking", "sitting"):
        (tmp_path / "photos" / activity).mkdir(parents=True)
        cv2.imwrite(str(tmp_path / "photos" / activity / "a.jpg"), np.full((96, 128, 3), 100, np.uint8))
    summary = extract_poses(
        tmp_path / "photos", keypoint_run[0] / "model.pt", tmp_path / "poses.json", "cpu", 0, 0
    )
    assert summary["images"] == 2 and summary["unreadable"] == 0
    assert set(summary["per_activity"]) == {"walking", "sitting"}
    if summary["poses"]:  # a barely trained model may find nobody in a grey picture
        poses = ActivityPoseSet.from_poses_file(
            tmp_path / "poses.json", ("walking", "running", "sitting", "standing")
        )
        assert len(poses) == summary["poses"]
    with pytest.raises(ValueError, match="no images"):
        extract_poses(tmp_path / "empty", None, tmp_path / "none.json")


def test_train_cli_runs_a_trainer_and_rejects_missing_data(synth_dir, tmp_path):
    import typer
    from typer.testing import CliRunner

    from workers.commands.train import register

    app = typer.Typer()

    @app.callback()
    def _root() -> None:
        pass

    register(app)
    runner = CliRunner()
    args = ["train", "activity", "--checkpoint", str(tmp_path / "m.pt"), "--out", str(tmp_path / "runs")]
    args += ["--preset", "demo", "--epochs", "2", "--batch-size", "4", "--loader-workers", "0", "--seed", "3"]
    result = runner.invoke(app, [*args, "--data", str(synth_dir)])
    assert result.exit_code == 0, result.output
    assert "activity: 2 epochs" in result.output
    assert read_checkpoint(tmp_path / "m.pt")["trained_parts"] == ["activity"]
    assert (tmp_path / "runs" / "activity_loss.png").is_file()
    missing = runner.invoke(app, args)
    assert missing.exit_code != 0 and "--data" in missing.output


def _predicted_poses_file(synth_dir: Path, path: Path, every: int = 1) -> int:
    """A poses file as ``extract_activity_poses`` writes it: every ``every``-th labelled train person,
    keypoints moved a little (a stand-in for predictions); returns the number of poses."""
    import json

    source = CocoKeypoints.from_root(synth_dir, "train")
    rng = np.random.default_rng(0)
    poses = []
    for index, image_id in enumerate(source.image_ids):
        for person in source.people(index):
            if not (person.labelled and person.activity):
                continue
            keypoints = person.keypoints.copy()
            keypoints[:, :2] += rng.normal(0, 2, (17, 2)) * (keypoints[:, 2:] > 0)
            poses.append(
                {
                    "image": source.coco.imgs[image_id]["file_name"],
                    "image_id": int(image_id),
                    "split": "train",
                    "annotation_id": person.annotation_id,
                    "activity": person.activity,
                    "source": "predicted",
                    "bbox": [float(v) for v in person.box],
                    "score": 0.8,
                    "keypoints": keypoints.tolist(),
                }
            )
    poses = poses[::every]
    path.write_text(json.dumps({"summary": {}, "poses": poses}))
    return len(poses)


def test_activity_trains_on_ground_truth_and_predicted_poses_split_by_image(synth_dir, tmp_path):
    from model.train.trainers import activity_dataset

    activities = ("walking", "running", "sitting", "standing")
    predicted = _predicted_poses_file(synth_dir, tmp_path / "poses.json")
    truth = len(ActivityPoseSet.from_coco(CocoKeypoints.from_root(synth_dir, "train"), activities))
    both = _config(synth_dir, tmp_path, poses=tmp_path / "poses.json")
    poses = activity_dataset(both, activities)
    assert len(poses) == truth + predicted
    assert poses.source_counts() == {"ground_truth": truth, "predicted": predicted}
    assert poses.sources == ["ground_truth"] * truth + ["predicted"] * predicted
    assert len(activity_dataset(_config(synth_dir, tmp_path), activities)) == truth
    only_predicted = _config(synth_dir, tmp_path, poses=tmp_path / "poses.json").model_copy(
        update={"data": None}
    )
    assert activity_dataset(only_predicted, activities).source_counts() == {"predicted": predicted}
    # a person's ground-truth and predicted pose share their image's group: never on both sides
    assert set(poses.groups[:truth]) == set(poses.groups[truth:])
    for seed in range(5):
        train, val = poses.split(0.3, seed)
        assert sorted(train.indices + val.indices) == list(range(len(poses)))
        assert len(val) > 0 and not {poses.groups[i] for i in train.indices} & {
            poses.groups[i] for i in val.indices
        }
        assert (
            poses.source_counts(val.indices)["predicted"] == poses.source_counts(val.indices)["ground_truth"]
        )

    state = train_activity(both.with_overrides("activity", epochs=2, batch_size=4, lr=None))
    assert state.epoch == 2
    assert {"val_accuracy", "val_accuracy_ground_truth", "val_accuracy_predicted"} <= set(state.history[-1])


def test_train_cli_takes_ground_truth_and_predicted_poses_together(synth_dir, tmp_path):
    import typer
    from typer.testing import CliRunner

    from workers.commands.train import register

    _predicted_poses_file(synth_dir, tmp_path / "poses.json", every=2)
    app = typer.Typer()

    @app.callback()
    def _root() -> None:
        pass

    register(app)
    args = ["train", "activity", "--checkpoint", str(tmp_path / "m.pt"), "--out", str(tmp_path / "runs")]
    args += ["--preset", "demo", "--epochs", "1", "--batch-size", "4", "--loader-workers", "0"]
    args += ["--data", str(synth_dir), "--poses", str(tmp_path / "poses.json")]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "activity: 1 epochs" in result.output
    wrong = CliRunner().invoke(app, [*args, "--real-pose-fraction", "0.5"])
    assert wrong.exit_code != 0 and "real-pose-fraction" in wrong.output


def test_peak_height_tells_flat_maps_from_peaked_ones(synth_dir, tmp_path):
    """The keypoint trainer's collapse signal: flat joint maps read 0, maps that reach 1 read 1."""
    from model.multiposenet import MultiPoseNet
    from model.train.trainers import _peak_height, _pose_loader

    config = _config(synth_dir, tmp_path)
    model = MultiPoseNet(ModelConfig.preset("demo", input_size=(96, 96)))
    loader = _pose_loader(config, model, "val", 2, augment=False)
    predict = model.keypoint_head.predict
    with torch.no_grad():
        predict.weight.zero_()
        predict.bias.zero_()
        assert _peak_height(model, loader, config, torch.device("cpu")) == pytest.approx(0.0)
        predict.bias[:17] = 1.0
        assert _peak_height(model, loader, config, torch.device("cpu")) == pytest.approx(1.0)


def test_bf16_channels_last_training_keeps_fp32_weights_and_learns(synth_dir, tmp_path):
    """The demo recipe's CPU path: bf16 autocast + channels-last, weights and checkpoint stay fp32."""
    config = _config(synth_dir, tmp_path, precision="bf16", channels_last=True)
    state = train_keypoints(config.with_overrides("keypoints", epochs=1, batch_size=2, lr=None))
    assert state.step == 4 and all(np.isfinite(state.step_losses))  # 8 images, batches of 2
    assert _falls(state.step_losses)
    model, _ = load_checkpoint(tmp_path / "model.pt")
    assert {p.dtype for p in model.parameters()} == {torch.float32}
    assert 0.0 <= state.history[-1]["val_peak_height"] <= 2.0
