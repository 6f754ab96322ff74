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
