"""``posestream infer VIDEO``: the committed demo checkpoint over a short generated video, with tracking;
the annotated WebM reads back, the events carry track ids, the JSON lines feed ``annotate``."""

from __future__ import annotations

import json

import cv2
import pytest
from typer.testing import CliRunner

from model.checkpoint import DEFAULT_CHECKPOINT
from model.data.sequence import iter_sequence_frames
from model.video import strip_indices
from schemas.wire import PersonEvent
from workers.annotate import index_events, read_json_lines

FRAMES, SIZE = 8, 256

pytestmark = pytest.mark.skipif(not DEFAULT_CHECKPOINT.is_file(), reason="no committed demo checkpoint")


@pytest.fixture(autouse=True)
def _log_to_each_runner(monkeypatch):
    import workers.log

    monkeypatch.setattr(workers.log, "_configured", False)


@pytest.fixture(scope="module")
def video(tmp_path_factory):
    path = tmp_path_factory.mktemp("video") / "walkers.mp4"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 10.0, (SIZE, SIZE))
    assert writer.isOpened()
    for frame, _truth in iter_sequence_frames(frames=FRAMES, people=2, seed=3, size=(SIZE, SIZE)):
        writer.write(frame)
    writer.release()
    return path


def test_infer_video_tracks_and_writes_a_webm_that_reads_back(video, tmp_path) -> None:
    from workers.cli import app

    out, strip = tmp_path / "out", tmp_path / "strip.png"
    args = ["infer", str(video), "-o", str(out), "--json", "--png", "--strip", str(strip), "--device", "cpu"]
    run = CliRunner().invoke(app, args)
    assert run.exit_code == 0, run.output
    capture = cv2.VideoCapture(str(out / "walkers.webm"))
    size = (capture.get(cv2.CAP_PROP_FRAME_WIDTH), capture.get(cv2.CAP_PROP_FRAME_HEIGHT))
    count = 0
    while capture.read()[0]:
        count += 1
    assert (count, size) == (FRAMES, (SIZE, SIZE))
    assert sorted(p.name for p in (out / "walkers").iterdir()) == [f"{i:06d}.png" for i in range(FRAMES)]

    events = [PersonEvent.from_map(json.loads(line)) for line in run.stdout.splitlines() if line.strip()]
    assert events, "the demo checkpoint finds the walkers"
    assert {e.camera_id for e in events} == {"walkers"} and {e.frame_id for e in events} <= set(range(FRAMES))
    assert all(e.track_id is not None and e.activity_smoothed for e in events)
    frames_of_track: dict[int, set[int]] = {}
    for e in events:
        frames_of_track.setdefault(e.track_id, set()).add(e.frame_id)
    assert max(len(frames) for frames in frames_of_track.values()) >= FRAMES // 2  # a person keeps an id
    assert f"frame {FRAMES - 1}:" in run.stderr and f"{FRAMES} frames" in run.stderr

    index = index_events(read_json_lines(out / "walkers.jsonl"))  # what annotate reads
    assert sorted(index.frames) == list(range(FRAMES))
    assert sum(len(f.events) for f in index.frames.values()) == len(events)

    picture = cv2.imread(str(strip))
    assert picture is not None and strip.stat().st_size <= 300_000
    assert picture.shape[1] == pytest.approx(4 * picture.shape[0], abs=2)  # four square frames in a row


def test_strip_needs_a_video_and_picks_spread_frames(tmp_path) -> None:
    from workers.cli import app

    image = tmp_path / "one.png"
    cv2.imwrite(str(image), next(iter_sequence_frames(frames=1, people=1, seed=0, size=(64, 64)))[0])
    run = CliRunner().invoke(app, ["infer", str(image), "--strip", str(tmp_path / "s.png")])
    assert run.exit_code == 2 and "--strip needs a video" in run.output
    assert strip_indices(60) == [7, 24, 42, 59]
    assert strip_indices(2) == [0, 1]
