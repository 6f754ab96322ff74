"""``posestream serve`` in its own process (its own Ray): it logs the metrics endpoint, consumes, and on
SIGTERM drains — frames in flight are finished and published, none is left pending — then exits 0."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from schemas.settings import Settings
from schemas.wire import STREAM_FIELD, Frame
from workers.redis_server import RedisServer

pytestmark = [pytest.mark.timeout(600), pytest.mark.slow]

REPO = Path(__file__).resolve().parents[2]
FRAMES = 12


def log_lines(path: Path) -> list[dict]:
    lines = []
    for line in path.read_text().splitlines():
        try:
            lines.append(json.loads(line))
        except json.JSONDecodeError:
            lines.append({"text": line})
    return lines


def test_serve_logs_its_metrics_endpoint_and_drains_on_sigterm(tmp_path: Path) -> None:
    import cv2
    import numpy as np

    def png_image(seed: int) -> bytes:
        pixels = np.random.default_rng(seed).integers(0, 256, (96, 128, 3), dtype=np.uint8)
        return cv2.imencode(".png", pixels)[1].tobytes()

    with RedisServer(tmp_path / "redis") as server:
        settings = Settings(redis_url=server.url)
        client = server.client()
        keys = settings.shard_keys(0)
        env = {k: v for k, v in os.environ.items() if not k.startswith(("RAY_ADDRESS", "POSESTREAM_"))}
        env["POSESTREAM_LOG_LEVEL"] = "INFO"  # JSON lines: stderr is not a terminal
        log_path = tmp_path / "serve.log"
        command = [
            sys.executable, "-c", "from workers.cli import main; main()", "serve",
            "--redis-url", server.url, "--num-cpus", "2", "--object-store-mb", "200",
        ]  # fmt: skip
        with log_path.open("w") as log_file:
            process = subprocess.Popen(command, cwd=REPO, env=env, stdout=log_file, stderr=subprocess.STDOUT)
        try:
            deadline = time.monotonic() + 420
            while "serving" not in log_path.read_text():
                assert process.poll() is None, log_path.read_text()[-4000:]
                assert time.monotonic() < deadline, log_path.read_text()[-4000:]
                time.sleep(0.5)
            for frame_id in range(FRAMES):
                frame = Frame(camera_id="cmd", frame_id=frame_id, ts=time.time(), image=png_image(frame_id))
                client.xadd(keys.frames, {STREAM_FIELD: frame.to_bytes()})
            while client.xlen(keys.results) < 2:
                assert process.poll() is None, log_path.read_text()[-4000:]
                assert time.monotonic() < deadline, "no results from posestream serve"
                time.sleep(0.2)
            process.send_signal(signal.SIGTERM)
            assert process.wait(timeout=180) == 0, log_path.read_text()[-4000:]
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()

        text = log_path.read_text()
        assert "metrics_endpoint" in text and "/metrics" in text
        assert "draining" in text and "drained" in text and "stopped" in text
        # Drained: every frame read was finished and acknowledged; the rest wait in the stream, none pending.
        finished = client.xlen(keys.results) + client.xlen(keys.dead)
        assert finished >= 2
        assert finished + client.xlen(keys.frames) == FRAMES
        assert client.xpending(keys.frames, settings.group)["pending"] == 0
        client.close()
