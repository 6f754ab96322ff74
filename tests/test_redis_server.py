"""The embedded redis-server: start on a free port, persistence across restart in place, clean stop."""

from __future__ import annotations

import pytest
import redis
from stream_helpers import DEBIAN_REDIS, skip_unless_available

from workers.redis_server import RedisServer, RedisServerError, find_redis_executable, frame_bulk_limit

EXECUTABLES = ["bundled", "debian"]


def _executable(name: str):
    if name == "debian":
        if not DEBIAN_REDIS.is_file():
            skip_unless_available("Debian's redis-server is not installed")
        return DEBIAN_REDIS
    return None


@pytest.mark.parametrize("name", EXECUTABLES)
def test_start_restart_in_place_keeps_acknowledged_writes(tmp_path, name):
    server = RedisServer(tmp_path / "data", executable=_executable(name))
    with server:
        assert server.running
        port, url = server.port, server.url
        client = server.client()
        config = (
            client.config_get("appendonly") | client.config_get("appendfsync") | client.config_get("save")
        )
        assert config == {"appendonly": "yes", "appendfsync": "always", "save": ""}
        client.xadd("s", {"msg": b"one"})
        client.set("lease", "7:abc", px=60_000)
        server.restart()
        assert (server.port, server.url) == (port, url)  # same address, same data dir
        assert client.xrange("s")[0][1] == {b"msg": b"one"}  # the client reconnects by itself
        assert client.get("lease") == b"7:abc" and client.pttl("lease") > 0
        client.close()
    assert not server.running
    with pytest.raises(redis.ConnectionError):
        redis.Redis.from_url(url, socket_connect_timeout=0.5, retry=None).ping()
    assert (tmp_path / "data" / "redis.conf").is_file()


def test_everysec_and_snapshots_are_configurable(tmp_path):
    with RedisServer(tmp_path, appendfsync="everysec", save_snapshots=True, maxmemory="64mb") as server:
        client = server.client(decode_responses=True)
        assert client.config_get("appendfsync") == {"appendfsync": "everysec"}
        assert client.config_get("save")["save"] != ""
        assert client.config_get("maxmemory-policy") == {"maxmemory-policy": "noeviction"}
        client.close()


def test_given_port_and_explicit_executable(tmp_path):
    bundled = find_redis_executable()
    first = RedisServer(tmp_path / "a").start()
    try:
        with pytest.raises(RedisServerError):  # the port is taken: the server exits at start
            RedisServer(tmp_path / "b", port=first.port, executable=bundled, start_timeout_s=5).start()
    finally:
        first.stop()
    with pytest.raises(RedisServerError):
        find_redis_executable(tmp_path / "no-such-redis-server")
    with pytest.raises(RedisServerError):
        _ = RedisServer(tmp_path / "c").url


@pytest.mark.parametrize("name", EXECUTABLES)
def test_the_bulk_limit_makes_redis_refuse_a_frame_over_it(tmp_path, name):
    """proto-max-bulk-len just above the payload limit: Redis itself refuses a bigger frame at XADD, so a
    read of N entries never brings more than N × the limit."""
    limit = frame_bulk_limit(2 << 20)
    with RedisServer(tmp_path / "redis", executable=_executable(name), max_bulk_bytes=limit) as server:
        client = server.client()
        assert int(client.config_get("proto-max-bulk-len")["proto-max-bulk-len"]) == limit
        client.xadd("frames", {"msg": b"x" * (2 << 20)})
        with pytest.raises(redis.exceptions.RedisError):
            client.xadd("frames", {"msg": b"x" * (limit + 1)})
        client = server.client()  # Redis closes the connection of a client that breaks the limit
        assert client.xlen("frames") == 1
        client.close()
