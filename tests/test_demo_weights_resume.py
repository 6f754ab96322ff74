"""``make demo-weights`` resumes: a run killed mid-training and started again ends with the very checkpoint
of an uninterrupted run (the smoke recipe, real processes, a real SIGKILL)."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.slow


def _recipe(work_dir: Path, out: Path) -> list[str]:
    return [
        sys.executable,
        "-m",
        "model.evaluation.demo_weights",
        "--smoke",
        "--seed",
        "3",
        "--work-dir",
        str(work_dir),
        "--out",
        str(out),
    ]


def _env() -> dict[str, str]:
    # one thread: the same kernels in every process, so the runs can be compared byte for byte
    return {**os.environ, "OMP_NUM_THREADS": "1"}


def _run(work_dir: Path, out: Path) -> None:
    subprocess.run(_recipe(work_dir, out), cwd=REPO, env=_env(), check=True, capture_output=True, timeout=600)


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_a_killed_run_resumes_to_the_uninterrupted_result(tmp_path):
    whole_dir, whole_out = tmp_path / "whole", tmp_path / "whole.pt"
    _run(whole_dir, whole_out)

    broken_dir, broken_out = tmp_path / "broken", tmp_path / "broken.pt"
    history = broken_dir / "runs" / "keypoints.history.json"
    process = subprocess.Popen(
        _recipe(broken_dir, broken_out),
        cwd=REPO,
        env=_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 300
        while not (history.is_file() and history.read_text().strip()) and process.poll() is None:
            if time.monotonic() > deadline:
                raise AssertionError("the keypoint trainer never finished its first epoch")
            time.sleep(0.05)
        assert process.poll() is None, "the run ended before it could be interrupted"
        process.send_signal(signal.SIGKILL)  # mid-run: in the keypoint trainer's second epoch
        process.wait(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
    assert not broken_out.exists()
    epochs_before = len(json.loads(history.read_text()))
    assert epochs_before < 2  # the kill landed before the keypoint trainer finished

    _run(broken_dir, broken_out)  # the same command again: resumes
    assert len(json.loads(history.read_text())) == 2
    assert _sha(broken_out) == _sha(whole_out)
    whole_timings = json.loads((whole_dir / "timings.json").read_text())
    assert set(json.loads((broken_dir / "timings.json").read_text())) == set(whole_timings)


def test_another_recipe_in_the_work_dir_starts_afresh(tmp_path):
    work_dir = tmp_path / "work"
    work_dir.mkdir()
    (work_dir / "recipe.json").write_text(json.dumps({"seed": 99}))
    stale = work_dir / "runs" / "keypoints.resume.pt"
    stale.parent.mkdir()
    stale.write_bytes(b"not a resume state of this recipe")
    _run(work_dir, tmp_path / "fresh.pt")
    assert (tmp_path / "fresh.pt").is_file()
    recipe = json.loads((work_dir / "recipe.json").read_text())
    assert recipe["seed"] == 3 and recipe["images"] == 24


def _run_stage(tmp_path: Path, flag: str, stage: int):
    """The smoke recipe's stage ``stage`` (``flag`` = --continue-from / --refine-from / --noise-prn-from)
    from the committed checkpoint: (input path, work dir, output path, input model, output model, meta)."""
    from model.checkpoint import DEFAULT_CHECKPOINT, load_checkpoint

    init = tmp_path / f"stage{stage - 1}.pt"
    init.write_bytes(DEFAULT_CHECKPOINT.read_bytes())
    work, out = tmp_path / f"stage{stage}", tmp_path / f"stage{stage}.pt"
    command = [*_recipe(work, out), flag, str(init)]
    subprocess.run(command, cwd=REPO, env=_env(), check=True, capture_output=True, timeout=600)
    return init, work, out, load_checkpoint(init)[0], *load_checkpoint(out)


def test_stage_two_retrains_the_detector_alone_with_empty_frames(tmp_path):
    """Stage 2 (``--continue-from``): the detector is trained again from fresh weights with empty frames
    among its images; keypoints, PRN and activity stay byte for byte; the recipe names its input by digest."""
    import torch

    init, work, out, before, after, meta = _run_stage(tmp_path, "--continue-from", 2)
    assert meta["version"].endswith("+empty-frames")
    assert set(meta["trained_parts"]) == {"keypoint", "detection", "prn", "activity"}
    for part in ("keypoint", "prn", "activity"):
        for name, tensor in before.part_state_dict(part).items():
            assert torch.equal(tensor, after.part_state_dict(part)[name]), name
    detection_before, detection_after = (
        before.part_state_dict("detection"),
        after.part_state_dict("detection"),
    )
    changed = [
        name for name, tensor in detection_before.items() if not torch.equal(tensor, detection_after[name])
    ]
    assert len(changed) > len(detection_before) // 2  # trained again, from fresh weights
    recipe = json.loads((work / "recipe.json").read_text())
    assert recipe["init_sha256"] == _sha(init) and recipe["empty_fraction"] > 0
    assert recipe["fresh_parts"] == ["detection"]
    summary = json.loads((work / "data" / "annotations" / "person_keypoints_train.json").read_text())
    annotated = {a["image_id"] for a in summary["annotations"]}
    assert any(image["id"] not in annotated for image in summary["images"])
    assert "Stage 2" in out.with_suffix(".md").read_text()


def test_stage_three_trains_the_keypoint_head_on_the_kept_trunk(tmp_path):
    """Stage 3 (``--refine-from``): the keypoint FPN + subnet and the activity MLP learn; the ResNet trunk,
    the detector and the PRN stay byte for byte (the detector still reads the features it was trained on)."""
    import torch

    init, work, out, before, after, meta = _run_stage(tmp_path, "--refine-from", 3)
    assert meta["version"].endswith("+keypoint-head")
    for module in ("backbone", "detection_fpn", "detection_head", "prn"):
        for name, tensor in getattr(before, module).state_dict().items():
            assert torch.equal(tensor, getattr(after, module).state_dict()[name]), f"{module}.{name}"
    for module in ("keypoint_fpn", "keypoint_head", "activity"):
        old, new = getattr(before, module).state_dict(), getattr(after, module).state_dict()
        assert any(not torch.equal(old[name], new[name]) for name in old), module
    recipe = json.loads((work / "recipe.json").read_text())
    assert recipe["init_sha256"] == _sha(init) and recipe["keypoint_freeze_backbone"] is True
    assert recipe["detection_epochs"] == 0 and recipe["prn_epochs"] == 0
    assert "Stage 3" in out.with_suffix(".md").read_text()


def test_stage_four_trains_the_prn_on_peak_like_inputs(tmp_path):
    """Stage 4 (``--noise-prn-from``): the PRN and the activity MLP learn, from the input's weights, on
    perturbed inputs; the backbone, both FPNs and both heads stay byte for byte."""
    import torch

    init, work, out, before, after, meta = _run_stage(tmp_path, "--noise-prn-from", 4)
    assert meta["version"].endswith("+noisy-prn")
    for module in ("backbone", "keypoint_fpn", "keypoint_head", "detection_fpn", "detection_head"):
        for name, tensor in getattr(before, module).state_dict().items():
            assert torch.equal(tensor, getattr(after, module).state_dict()[name]), f"{module}.{name}"
    for module in ("prn", "activity"):
        old, new = getattr(before, module).state_dict(), getattr(after, module).state_dict()
        assert any(not torch.equal(old[name], new[name]) for name in old), module
    recipe = json.loads((work / "recipe.json").read_text())
    assert recipe["init_sha256"] == _sha(init) and recipe["prn_epochs"] == 2
    assert recipe["keypoint_epochs"] == 0 and recipe["detection_epochs"] == 0
    assert recipe["prn_mirror_prob"] > 0 and recipe["prn_point_jitter"] > 0
    assert "Stage 4" in out.with_suffix(".md").read_text()
