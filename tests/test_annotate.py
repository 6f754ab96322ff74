"""``posestream annotate``: events from a JSON-lines file or from a real Redis, joined to the source's
frames by ``meta.frame_index`` (or frame_id), drawn into a WebM that reads back and into PNGs."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest
import typer
from typer.testing import CliRunner

from model.draw import track_color
from model.video import AnnotatedVideo
from schemas.settings import Settings
from schemas.wire import STREAM_FIELD, FrameResult, PersonEvent
from workers.annotate import index_events, read_json_lines
from workers.commands import annotate as annotate_command
from workers.commands.events import message_json

WIDTH, HEIGHT = 96, 72


def _app() -> typer.Typer:
    app = typer.Typer()

    @app.callback()
    def _root() -> None:
        pass

    annotate_command.register(app)
    return app


def event(camera: str, frame_id: int, person: int, box, track_id: int | None = None) -> PersonEvent:
    x1, y1, x2, y2 = box
    keypoints = [[(x1 + x2) / 2, y1 + 4.0, 0.9]] * 5 + [[(x1 + x2) / 2, (y1 + y2) / 2, 0.9]] * 12
    return PersonEvent(
        event_id=PersonEvent.make_id(camera, frame_id, person), camera_id=camera, frame_id=frame_id,
        ts=1.0, person=person, bbox=[float(v) for v in box], score=0.9, keypoints=keypoints,
        activity="walking", activity_scores={"walking": 0.9}, model="test", width=WIDTH, height=HEIGHT,
        latency_ms=1.0, track_id=track_id, activity_smoothed="running" if track_id else None,
    )  # fmt: skip


def result(camera: str, frame_id: int, events: list[PersonEvent], frame_index: int | None) -> FrameResult:
    meta = {"source": "frames", "frame_index": frame_index} if frame_index is not None else None
    return FrameResult(
        camera_id=camera, frame_id=frame_id, ts=1.0, status="ok", persons=len(events),
        event_ids=[e.event_id for e in events], width=WIDTH, height=HEIGHT, latency_ms=1.0, meta=meta,
    )  # fmt: skip


def frames_folder(tmp_path, count: int = 6):
    folder = tmp_path / "frames"
    folder.mkdir()
    for i in range(count):
        cv2.imwrite(str(folder / f"img{i:02d}.png"), np.full((HEIGHT, WIDTH, 3), 30 + 10 * i, np.uint8))
    return folder


def messages_for(camera: str = "cam") -> list[PersonEvent | FrameResult]:
    """Frame ids in µs (as publish makes them) mapped to source frames 2 and 4; frame 5 has no result."""
    two = [event(camera, 1_000_000, 0, (10, 10, 40, 60), track_id=7)]
    four = [
        event(camera, 2_000_000, 0, (50, 5, 90, 65), track_id=3),
        event(camera, 2_000_000, 1, (5, 5, 30, 50)),
    ]
    five = [event(camera, 5, 0, (20, 20, 60, 70))]
    return [*two, result(camera, 1_000_000, two, 2), *four, result(camera, 2_000_000, four, 4), *five]


def read_back(path) -> tuple[int, tuple[int, int]]:
    capture = cv2.VideoCapture(str(path))
    assert capture.isOpened()
    size = (int(capture.get(cv2.CAP_PROP_FRAME_WIDTH)), int(capture.get(cv2.CAP_PROP_FRAME_HEIGHT)))
    count = 0
    while capture.read()[0]:
        count += 1
    capture.release()
    return count, size


def check_annotated(out, folder, drawn: set[int], count: int = 6) -> None:
    assert read_back(out / "frames.webm") == (count, (WIDTH, HEIGHT))
    for i in range(count):
        png = cv2.imread(str(out / "frames" / f"{i:06d}.png"))
        source = cv2.imread(str(folder / f"img{i:02d}.png"))
        assert png is not None and png.shape == source.shape
        assert np.array_equal(png, source) == (i not in drawn), f"frame {i}"


def test_annotate_from_a_json_lines_file(tmp_path) -> None:
    folder = frames_folder(tmp_path)
    events_file = tmp_path / "events.jsonl"
    # what `posestream events --json --results` writes, a dead letter among them
    lines = [json.dumps(message_json(m)) for m in messages_for()] + ['{"kind": "dead_letter", "v": 1}']
    events_file.write_text("\n".join(lines) + "\n")
    out = tmp_path / "out"
    run = CliRunner().invoke(_app(), ["annotate", str(folder), "--events", str(events_file), "-o", str(out)])
    assert run.exit_code == 0, run.output
    assert "4 events drawn on 3 of them" in run.output
    check_annotated(out, folder, drawn={2, 4, 5})
    png = cv2.imread(str(out / "frames" / "000002.png"))
    assert tuple(png[35, 10]) == track_color(7)  # left edge of track 7's box
    png = cv2.imread(str(out / "frames" / "000004.png"))
    assert tuple(png[35, 50]) == track_color(3)


def test_annotate_from_redis_reads_the_streams_from_the_start(tmp_path, redis_url, sync_redis) -> None:
    keys = Settings().shard_keys(0)
    for message in messages_for("cam") + messages_for("other")[:2]:
        stream = keys.events if isinstance(message, PersonEvent) else keys.results
        sync_redis.xadd(stream, {STREAM_FIELD: message.to_bytes()})
    folder = frames_folder(tmp_path)
    out = tmp_path / "out"
    runner = CliRunner()
    both = runner.invoke(_app(), ["annotate", str(folder), "--events", redis_url, "-o", str(out)])
    assert both.exit_code == 2 and "several cameras (cam, other)" in both.output
    one = runner.invoke(
        _app(),
        [
            "annotate",
            str(folder),
            "--events",
            redis_url,
            "-o",
            str(out),
            "--camera-id",
            "cam",
            "--blur-faces",
        ],
    )
    assert one.exit_code == 0, one.output
    check_annotated(out, folder, drawn={2, 4, 5})
    assert sync_redis.xlen(keys.events) == 5  # read, not consumed (4 of cam, 1 of other)
    other = ["--camera-id", "other", "--no-png"]
    no_png = runner.invoke(
        _app(), ["annotate", str(folder), "--events", redis_url, "-o", str(tmp_path / "v"), *other]
    )
    assert no_png.exit_code == 0, no_png.output
    assert read_back(tmp_path / "v" / "frames.webm")[0] == 6 and not (tmp_path / "v" / "frames").exists()


def test_index_events_joins_by_frame_index_and_falls_back_to_frame_id() -> None:
    messages = messages_for()
    index = index_events(messages + [messages[0]])  # a redelivered event is drawn once
    assert sorted(index.frames) == [2, 4, 5] and index.camera_id == "cam"
    assert [e.person for e in index.frames[4].events] == [0, 1]
    assert len(index.frames[2].events) == 1 and index.frames[2].frame_id == 1_000_000
    # a looped source published frame index 2 again: the first frame with that index is kept
    again = [event("cam", 3_000_000, 0, (1, 1, 9, 9))]
    looped = index_events(messages + [*again, result("cam", 3_000_000, again, 2)])
    assert looped.collisions == 1 and looped.frames[2].frame_id == 1_000_000


def test_bad_events_input_fails_with_a_message(tmp_path) -> None:
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"kind": "person_event", "v": 1, "camera_id": "cam"}\n')
    with pytest.raises(ValueError, match="bad.jsonl:1: not a posestream events JSON line"):
        read_json_lines(bad)
    folder = frames_folder(tmp_path)
    missing = CliRunner().invoke(
        _app(), ["annotate", str(folder), "--events", str(tmp_path / "nope.jsonl"), "-o", str(tmp_path / "o")]
    )
    assert missing.exit_code == 2 and "no such file" in missing.output


def test_a_video_source_and_odd_frame_sizes_read_back_whole(tmp_path) -> None:
    video = tmp_path / "clip.mp4"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"mp4v"), 10.0, (WIDTH, HEIGHT))
    for i in range(5):
        writer.write(np.full((HEIGHT, WIDTH, 3), 40 * i, np.uint8))
    writer.release()
    events_file = tmp_path / "e.jsonl"
    # no results: frame_id is the frame index
    events_file.write_text(json.dumps(message_json(event("clip", 3, 0, (10, 10, 40, 60), 1))) + "\n")
    run = CliRunner().invoke(
        _app(), ["annotate", str(video), "--events", str(events_file), "-o", str(tmp_path)]
    )
    assert run.exit_code == 0, run.output
    assert read_back(tmp_path / "clip.webm") == (5, (WIDTH, HEIGHT))
    assert "1 events drawn on 1 of them" in run.output
    with AnnotatedVideo(tmp_path / "odd.webm", 5.0) as odd:  # VP8 wants even sides: padded, not cut
        for _ in range(3):
            odd.write(np.zeros((51, 77, 3), np.uint8))
    assert read_back(tmp_path / "odd.webm") == (3, (78, 52))
    with pytest.raises(ValueError, match="must end in .webm"):
        AnnotatedVideo(tmp_path / "x.mp4", 5.0)
