"""``posestream publish`` of a video file and of folders, and ``posestream events --json``, on real Redis."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest
import typer
from typer.testing import CliRunner

from schemas.examples import examples
from schemas.settings import Settings
from schemas.wire import STREAM_FIELD, Frame
from workers.client import connect
from workers.commands import events as events_command
from workers.commands import publish as publish_command
from workers.redis_server import RedisServer


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    with RedisServer(tmp_path_factory.mktemp("redis-publish-cli")) as srv:
        yield srv


@pytest.fixture()
def env(server, monkeypatch, request):
    prefix = "cli" + request.node.name[-24:].replace("[", "").replace("]", "").replace("_", "")
    monkeypatch.setenv("POSESTREAM_REDIS_URL", server.url)
    monkeypatch.setenv("POSESTREAM_STREAM_PREFIX", prefix)
    client = connect(server.url)
    yield Settings(), client
    client.close()


def _app() -> typer.Typer:
    app = typer.Typer()

    @app.callback()
    def _root() -> None:
        pass

    publish_command.register(app)
    events_command.register(app)
    return app


def _frames(client, settings: Settings) -> list[Frame]:
    key = settings.shard_keys(0).frames
    return [Frame.from_bytes(fields[STREAM_FIELD.encode()]) for _, fields in client.xrange(key)]


def _write_video(path, frames: int, size=(64, 48)) -> None:
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 25.0, size)
    assert writer.isOpened()
    for i in range(frames):
        image = np.full((size[1], size[0], 3), 20 * i % 255, np.uint8)
        cv2.rectangle(image, (i * 3, 5), (i * 3 + 10, 30), (0, 0, 255), -1)
        writer.write(image)
    writer.release()


def test_publish_video_file(env, tmp_path):
    settings, client = env
    video = tmp_path / "door.mp4"
    _write_video(video, frames=9)
    result = CliRunner().invoke(_app(), ["publish", str(video), "--camera-id", "door-1", "--fps", "0"])
    assert result.exit_code == 0, result.output
    assert "frames 9" in result.output
    frames = _frames(client, settings)
    assert len(frames) == 9
    assert {f.camera_id for f in frames} == {"door-1"}
    ids = [f.frame_id for f in frames]
    assert ids == sorted(set(ids))  # strictly increasing
    assert all(abs(f.frame_id / 1e6 - f.ts) < 1e-3 for f in frames)  # capture time in µs
    image = cv2.imdecode(np.frombuffer(frames[0].image, np.uint8), cv2.IMREAD_COLOR)
    assert image.shape == (48, 64, 3)
    # the video's frame number rides along in meta, next to the source's name (results echo it)
    assert [f.meta for f in frames] == [{"source": "door.mp4", "frame_index": i} for i in range(9)]


def test_publish_folders_as_two_cameras_with_loop(env, tmp_path):
    settings, client = env
    folders = []
    for name, count in (("yard", 3), ("gate", 2)):
        folder = tmp_path / name
        folder.mkdir()
        for i in range(count):
            cv2.imwrite(str(folder / f"{i:03d}.png"), np.full((16, 20, 3), 40 * i, np.uint8))
        (folder / "notes.txt").write_text("not an image")
        folders.append(str(folder))
    # Named after the folders; --loop with --max-frames: the gate folder plays 2 frames, then again.
    result = CliRunner().invoke(_app(), ["publish", *folders, "--loop", "--max-frames", "5"])
    assert result.exit_code == 0, result.output
    frames = _frames(client, settings)
    by_camera: dict[str, list[Frame]] = {}
    for frame in frames:
        by_camera.setdefault(frame.camera_id, []).append(frame)
    assert sorted(by_camera) == ["gate", "yard"]
    assert len(by_camera["yard"]) == 5 and len(by_camera["gate"]) == 5
    expected_gate = [(tmp_path / "gate" / f"{i:03d}.png").read_bytes() for i in (0, 1, 0, 1, 0)]
    assert [f.image for f in by_camera["gate"]] == expected_gate  # PNGs sent as they are, sorted
    # the image's number in its folder; a loop starts the numbering again with the folder
    assert [f.meta["frame_index"] for f in by_camera["gate"]] == [0, 1, 0, 1, 0]
    assert [f.meta["frame_index"] for f in by_camera["yard"]] == [0, 1, 2, 0, 1]
    assert {f.meta["source"] for f in by_camera["yard"]} == {"yard"}


def test_publish_rejects_mismatched_camera_ids_and_missing_sources(env, tmp_path):
    image = tmp_path / "one.jpg"
    cv2.imwrite(str(image), np.zeros((8, 8, 3), np.uint8))
    runner = CliRunner()
    result = runner.invoke(_app(), ["publish", str(image), str(image), "--camera-id", "a"])
    assert result.exit_code != 0
    result = runner.invoke(_app(), ["publish", str(tmp_path / "missing.mp4")])
    assert result.exit_code == 2
    assert "no such file" in result.output


def test_events_json_lines(env):
    settings, client = env
    event = examples()["person_event"]
    keys = settings.shard_keys(0)
    client.xadd(keys.events, {STREAM_FIELD: event.to_bytes()})
    client.xadd(keys.results, {STREAM_FIELD: examples()["frame_result"].to_bytes()})
    client.xadd(keys.dead, {STREAM_FIELD: examples()["dead_letter"].to_bytes()})
    result = CliRunner().invoke(_app(), ["events", "--json", "--results", "--dead"])
    assert result.exit_code == 0, result.output
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    assert sorted(line["kind"] for line in lines) == ["dead_letter", "frame_result", "person_event"]
    person = next(line for line in lines if line["kind"] == "person_event")
    assert person["event_id"] == event.event_id and len(person["keypoints"]) == 17
    other = CliRunner().invoke(_app(), ["events", "--json", "--camera-id", "someone-else"])
    assert other.exit_code == 0 and other.stdout.strip() == ""
