"""Smoke tests of the benchmarks' plumbing: people_scaling and overload_latency at toy settings write the JSON
they promise.

Figures are not checked (they depend on the machine); only that both sides ran and processed exactly the
requested number of people, and that every frame offered under overload came back with an outcome."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_people_scaling_writes_expected_json(tmp_path: Path) -> None:
    out = tmp_path / "people_scaling.json"
    command = [
        sys.executable, "-m", "bench.people_scaling", "--size", "64", "--persons", "1", "2",
        "--repeats", "1", "--warmup", "0", "--threads", "1", "--no-gmacs", "--no-plot",
        "--models", "posestream-demo", "keypointrcnn-r50", "--out", str(out),
    ]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    done = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]

    result = json.loads(out.read_text())
    assert result["benchmark"] == "people_scaling"
    assert {"settings", "environment", "load", "rows", "ratios", "growth", "what_is_timed"} <= set(result)
    assert result["settings"]["threads"] == 1
    assert result["environment"]["torch_threads"] == 1
    rows = {(row["model"], row["persons"]): row for row in result["rows"]}
    assert set(rows) == {(m, p) for m in ("posestream-demo", "keypointrcnn-r50") for p in (1, 2)}
    for (_, persons), row in rows.items():
        assert row["persons_out"] == persons  # both sides really processed P people
        assert row["repeats"] == 1 and row["median_ms"] > 0
        assert {"q1_ms", "q3_ms", "iqr_ms", "min_ms", "samples_ms"} <= set(row)
    assert set(result["growth"]) == {"posestream-demo", "keypointrcnn-r50"}


def test_overload_latency_accounts_for_every_frame_and_records_the_window(tmp_path: Path) -> None:
    out = tmp_path / "overload_latency.json"
    command = [sys.executable, "-m", "bench.overload_latency", "--smoke", "--out", str(out)]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    done = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]

    result = json.loads(out.read_text())
    batch = result["backbone_max_batch_size"]
    # the in-process worker on CPU: one call's batch in flight, none queued behind it
    assert result["window"] == {
        "0": {
            "frames": batch,
            "source": "call_batch",
            "max_batch_size": batch,
            "replicas": 1,
            "device_type": "cpu",
            "queued_batches": 0,
        }
    }
    runs = [run for samples in result["runs"].values() for run in samples]
    assert len(runs) == 3 and all(run["published"] > 0 for run in runs)
    for run in runs:  # every frame published came back ok or stale: none lost, none counted twice
        assert run["unaccounted"] == 0 and run["ok"] + run["stale"] == run["published"], run
    assert set(result["goal"]) == {"p50_2x_over_bare_batch", "p50_2x_ok", "fps_2x_over_1x", "fps_ok"}
    assert result["environment"]["git_commit"]


def test_delivered_rate_does_not_count_the_first_arrival() -> None:
    from bench.overload_latency import delivered_fps

    # three batches of four results, one second apart: 8 frames delivered in 2 s after the first arrival
    assert delivered_fps([0.0] * 4 + [1.0] * 4 + [2.0] * 4) == 4.0
    assert delivered_fps([5.0]) is None and delivered_fps([3.0, 3.0]) is None
