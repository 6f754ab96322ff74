"""bench/gpu_check.sh works before any GPU sees it: its ``--device cpu --smoke`` mode trains the default
preset on a generated set, then times inference at batch 1 and 8, and writes its JSON report."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]


@pytest.mark.skipif(shutil.which("timeout") is None, reason="the script stops training with timeout(1)")
def test_gpu_check_smoke_mode_on_the_cpu(tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHON": str(REPO / ".venv" / "bin" / "python")}
    if not Path(env["PYTHON"]).is_file():
        env.pop("PYTHON")
    done = subprocess.run(
        ["bash", "bench/gpu_check.sh", "--device", "cpu", "--smoke", "--out", str(tmp_path)],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=840,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads((tmp_path / "gpu_check.json").read_text())
    assert report == json.loads(done.stdout[done.stdout.index("{") :])
    training = report["training"]
    assert training["preset"] == "default" and training["epochs_finished"] == 2
    assert len(training["images_per_s_per_epoch"]) == 2 and training["images_per_s"] > 0
    assert training["last_loss"] > 0
    inference = report["inference"]
    assert inference["batch_1_frames_per_s"] > 0 and inference["batch_8_frames_per_s"] > 0
    assert inference["persons_per_frame"] == 4
