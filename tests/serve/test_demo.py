"""``posestream demo --frames 20`` end to end: embedded Redis, a real local Ray Serve, two cameras.

The demo runs as a subprocess with its own Ray, so it never shares this pytest process's Ray (the Serve
suite's session fixture). The file sorts before the other Serve tests, so it runs before that fixture
starts a Ray in this process.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.timeout(900), pytest.mark.slow]

REPO = Path(__file__).resolve().parents[2]
FRAMES = 20
CAMERAS = 2

# The command as `posestream demo` runs it; a stand-alone Typer app until workers/cli.py lists the module.
_RUN_DEMO = """
import sys, typer
from workers import cli
names = {c.name for c in cli.app.registered_commands}
if "demo" in names:
    cli.main()
else:
    from workers.commands import demo
    from workers.log import configure_logging
    app = typer.Typer(pretty_exceptions_enable=False)
    @app.callback()
    def _root() -> None:
        configure_logging()
    demo.register(app)
    app()
"""


def test_demo_end_to_end_summary_balances(tmp_path: Path) -> None:
    summary_path = tmp_path / "summary.json"
    out_dir = tmp_path / "frames"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RAY_ADDRESS", "POSESTREAM_"))}
    command = [
        sys.executable, "-c", _RUN_DEMO, "demo", "--frames", str(FRAMES), "--fps", "0",
        "--out", str(out_dir), "--json-summary", str(summary_path),
    ]  # fmt: skip
    done = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=840)
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-4000:]
    summary = json.loads(summary_path.read_text())

    published = FRAMES * CAMERAS
    assert summary["frames_published"] == published
    assert summary["frames_dropped"] == 0
    assert summary["results_ok"] + summary["results_stale"] + summary["dead_letters"] == published
    assert summary["balanced"] is True
    assert summary["dead_letters"] == 0  # the demo's frames are all valid
    assert summary["events"] == summary["persons"]  # one event per person of each FrameResult
    assert sum(summary["activities"].values()) == summary["events"]
    assert sorted(summary["cameras"]) == ["demo-cam-a", "demo-cam-b"]
    assert summary["frames_per_s"] > 0
    assert summary["ground_truth_persons"] > 0  # the synthetic sequence has people in it

    # One annotated frame per finished frame, in one folder per camera; the summary is printed too.
    drawn = sorted(out_dir.glob("*/*.jpg"))
    assert len(drawn) == summary["annotated_frames"] == summary["results_ok"] + summary["results_stale"]
    assert "posestream demo summary" in done.stdout
    # and each camera's annotated frames as a WebM video; the track figures (or why there are none)
    videos = sorted(out_dir.glob("*.webm"))
    assert [v.stem for v in videos] == sorted(summary["cameras"])
    assert sorted(Path(p).name for p in summary["annotated_videos"]) == [v.name for v in videos]
    assert "tracks             " in done.stdout

    from model.checkpoint import DEFAULT_CHECKPOINT

    # The committed demo checkpoint runs by default and finds the synthetic people.
    assert DEFAULT_CHECKPOINT.is_file()
    assert summary["persons"] > 0
    assert summary["ground_truth_found"] > 0
    # The found persons' activities, against the sequence's activity of each person in that frame.
    assert summary["activity_matched"] == summary["ground_truth_found"]
    assert 0 <= summary["activity_correct"] <= summary["activity_matched"]
    assert 0.0 <= summary["activity_accuracy"] <= 1.0
    by_class = summary["activity_by_class"]
    assert sum(row["persons"] for row in by_class.values()) == summary["activity_matched"]
    assert sum(row["correct"] for row in by_class.values()) == summary["activity_correct"]
    assert "activity vs truth" in done.stdout
    assert summary["latency_ms"]["p50"] is not None
    assert summary["model"].startswith("demo-synthetic")
