"""``posestream publish`` gives live sources' frames a ``max_age_s`` (default 2 s), files none; real Redis."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import typer
from typer.testing import CliRunner

from schemas.settings import Settings
from schemas.wire import STREAM_FIELD, Frame
from workers.client import connect
from workers.client import sources as sources_module
from workers.commands import publish as publish_command
from workers.commands.publish import source_max_age
from workers.redis_server import RedisServer


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    with RedisServer(tmp_path_factory.mktemp("redis-publish-age")) as srv:
        yield srv


@pytest.fixture()
def env(server, monkeypatch, request):
    prefix = "age" + request.node.name[-24:].replace("[", "").replace("]", "").replace("_", "")
    monkeypatch.setenv("POSESTREAM_REDIS_URL", server.url)
    monkeypatch.setenv("POSESTREAM_STREAM_PREFIX", prefix)
    monkeypatch.delenv("POSESTREAM_LIVE_MAX_AGE_S", raising=False)
    # A capture that needs no camera: every live spec yields three small frames.
    monkeypatch.setattr(
        sources_module,
        "video_frames",
        lambda spec: iter([np.full((24, 32, 3), 50 * i, np.uint8) for i in range(3)]),
    )
    client = connect(server.url)
    yield client
    client.close()


def _app() -> typer.Typer:
    app = typer.Typer()

    @app.callback()
    def _root() -> None:
        pass

    publish_command.register(app)
    return app


def _ages(client) -> dict[str, list[float | None]]:
    key = Settings().shard_keys(0).frames
    ages: dict[str, list[float | None]] = {}
    for _, fields in client.xrange(key):
        frame = Frame.from_bytes(fields[STREAM_FIELD.encode()])
        ages.setdefault(frame.camera_id, []).append(frame.max_age_s)
    return ages


def test_live_sources_carry_the_default_max_age_and_files_none(env, tmp_path):
    image = tmp_path / "still.png"
    cv2.imwrite(str(image), np.zeros((16, 16, 3), np.uint8))
    result = CliRunner().invoke(
        _app(),
        ["publish", "rtsp://cam.local/stream", "0", str(image), "--camera-id", "gate",
         "--camera-id", "webcam",
         "--camera-id", "still", "--fps", "0"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert _ages(env) == {"gate": [2.0, 2.0, 2.0], "webcam": [2.0, 2.0, 2.0], "still": [None]}


def test_max_age_flag_and_setting(env, monkeypatch, tmp_path):
    video = tmp_path / "clip.mp4"  # a video file by its name; its frames come from the stand-in capture
    video.write_bytes(b"not read")
    monkeypatch.setenv("POSESTREAM_LIVE_MAX_AGE_S", "0.5")
    result = CliRunner().invoke(_app(), ["publish", "http://cam.local/mjpeg", "--camera-id", "yard"])
    assert result.exit_code == 0, result.output
    # the flag wins over the setting; a video file never expires, whatever the flag
    result = CliRunner().invoke(
        _app(), ["publish", "rtsp://cam.local/2", str(video), "--camera-id", "door", "--camera-id", "clip",
                 "--max-age", "5", "--fps", "0"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    result = CliRunner().invoke(
        _app(), ["publish", "rtsp://cam.local/3", "--camera-id", "off", "--max-age", "0"]
    )
    assert result.exit_code == 0, result.output
    assert _ages(env) == {
        "yard": [0.5] * 3, "door": [5.0] * 3, "clip": [None] * 3, "off": [None] * 3
    }  # fmt: skip


@pytest.mark.parametrize(
    ("kind", "bound", "expected"),
    [
        ("live", 2.0, 2.0),
        ("live", 0.0, None),
        ("video", 2.0, None),
        ("folder", 2.0, None),
        ("image", 9.0, None),
    ],
)
def test_source_max_age(kind, bound, expected):
    assert source_max_age(kind, bound) == expected
