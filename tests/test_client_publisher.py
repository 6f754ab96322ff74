"""FramePublisher against a real Redis: shard choice, frame ids, backpressure both ways."""

from __future__ import annotations

import threading
import time
import uuid
import zlib

import cv2
import numpy as np
import pytest

from schemas.settings import Settings
from schemas.wire import STREAM_FIELD, Frame
from workers.client import BackpressureTimeout, FramePublisher, FrameTooLarge, connect
from workers.redis_server import RedisServer


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    with RedisServer(tmp_path_factory.mktemp("redis-publisher")) as srv:
        yield srv


def _settings(server, shards: int = 1) -> Settings:
    # A fresh prefix per test: tests share one server but never each other's streams.
    return Settings(redis_url=server.url, stream_prefix=f"t{uuid.uuid4().hex[:8]}", shards=shards)


def _image(seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.integers(0, 255, size=(24, 32, 3), dtype=np.uint8)


def _frames(client, key: str) -> list[Frame]:
    return [Frame.from_bytes(fields[STREAM_FIELD.encode()]) for _, fields in client.xrange(key)]


def test_cameras_land_on_crc32_mod_s_shards(server):
    settings = _settings(server, shards=4)
    cameras = [f"cam-{i}" for i in range(12)]
    with FramePublisher(settings=settings) as pub:
        for round_ in range(2):
            for i, cam in enumerate(cameras):
                outcome = pub.publish(_image(i), cam, meta={"round": round_})
                assert outcome.published
                assert outcome.shard == zlib.crc32(cam.encode()) % 4
        client = pub.redis
        seen: dict[str, int] = {}
        for shard in range(4):
            for frame in _frames(client, f"{settings.stream_prefix}:{{{shard}}}:frames"):
                assert zlib.crc32(frame.camera_id.encode()) % 4 == shard
                seen[frame.camera_id] = seen.get(frame.camera_id, 0) + 1
                decoded = cv2.imdecode(np.frombuffer(frame.image, np.uint8), cv2.IMREAD_COLOR)
                assert decoded.shape == (24, 32, 3)
        assert seen == {cam: 2 for cam in cameras}
        assert len({zlib.crc32(c.encode()) % 4 for c in cameras}) > 1  # the test spans several shards
        assert pub.counts["published"] == 24


def test_frame_ids_are_capture_time_in_us_and_strictly_increase(server):
    settings = _settings(server)
    with FramePublisher(settings=settings) as pub:
        ts = time.time()
        ids = [pub.publish(b"\x89PNG-not-checked-here", "a", ts=ts).frame_id for _ in range(3)]
        assert ids[0] == int(ts * 1_000_000)
        assert ids == [ids[0], ids[0] + 1, ids[0] + 2]
        # Another camera has its own sequence; an explicit id is kept as given.
        assert pub.publish(b"x", "b", ts=ts).frame_id == ids[0]
        assert pub.publish(b"x", "b", frame_id=7).frame_id == 7
        frames = _frames(pub.redis, settings.shard_keys(0).frames)
        assert [(f.camera_id, f.frame_id) for f in frames] == [
            ("a", ids[0]),
            ("a", ids[1]),
            ("a", ids[2]),
            ("b", ids[0]),
            ("b", 7),
        ]
        assert all(f.ts == ts for f in frames[:4])


def test_bad_camera_id_fails_before_anything_is_sent(server):
    settings = _settings(server)
    with FramePublisher(settings=settings) as pub:
        with pytest.raises(ValueError):
            pub.publish(_image(0), "bad camera id")
        assert pub.redis.xlen(settings.shard_keys(0).frames) == 0


def test_policy_drop_returns_dropped_and_counts(server):
    settings = _settings(server)
    with FramePublisher(settings=settings, policy="drop", max_backlog=2) as pub:
        outcomes = [pub.publish(_image(i), "cam") for i in range(5)]
        assert [o.status for o in outcomes] == ["published"] * 2 + ["dropped"] * 3
        assert [o.backlog for o in outcomes] == [0, 1, 2, 2, 2]
        assert pub.counts["published"] == 2 and pub.counts["dropped"] == 3
        key = settings.shard_keys(0).frames
        assert pub.redis.xlen(key) == 2
        # Once the worker deletes what it acknowledged, frames flow again.
        first_id = pub.redis.xrange(key, count=1)[0][0]
        pub.redis.xdel(key, first_id)
        assert pub.publish(_image(9), "cam").published


def test_policy_wait_blocks_until_a_consumer_drains_below_the_bound(server):
    settings = _settings(server)
    key = settings.shard_keys(0).frames
    with FramePublisher(settings=settings, policy="wait", max_backlog=3, wait_timeout_s=60) as pub:
        for i in range(3):
            assert pub.publish(_image(i), "cam").published
        done: list = []
        waiter = threading.Thread(target=lambda: done.append(pub.publish(_image(3), "cam")), daemon=True)
        waiter.start()
        waiter.join(timeout=0.5)
        assert waiter.is_alive() and not done  # held back: the backlog is at the bound
        assert pub.redis.xlen(key) == 3

        # A consumer (as the worker does) reads through its group, acknowledges and deletes one frame.
        consumer = connect(server.url)
        consumer.xgroup_create(key, "g", id="0")
        [(_, entries)] = consumer.xreadgroup("g", "c1", {key: ">"}, count=1)
        consumer.xack(key, "g", entries[0][0])
        consumer.xdel(key, entries[0][0])
        waiter.join(timeout=30)
        assert not waiter.is_alive()
        assert done[0].published and done[0].backlog == 2
        assert pub.redis.xlen(key) == 3
        assert pub.counts["waits"] == 1
        consumer.close()


def test_policy_wait_times_out(server):
    settings = _settings(server)
    with FramePublisher(settings=settings, policy="wait", max_backlog=1, wait_timeout_s=0.2) as pub:
        pub.publish(_image(0), "cam")
        with pytest.raises(BackpressureTimeout):
            pub.publish(_image(1), "cam")
        assert pub.counts["published"] == 1


def test_rejects_bad_policy_and_bad_array():
    with pytest.raises(ValueError, match="policy"):
        FramePublisher("redis://127.0.0.1:1/0", policy="block")
    with FramePublisher("redis://127.0.0.1:1/0") as pub, pytest.raises(ValueError, match="uint8"):
        pub.publish(np.zeros((4, 4, 3), np.float32), "cam")


def test_a_frame_over_the_payload_limit_is_refused_before_xadd(server):
    settings = _settings(server).model_copy(update={"max_payload_bytes": 4096})
    noise = np.random.default_rng(1).integers(0, 255, size=(96, 96, 3), dtype=np.uint8)  # JPEG ≫ 4 KB
    with FramePublisher(settings=settings) as pub:
        assert pub.publish(_image(0), "cam-small").published
        with pytest.raises(FrameTooLarge, match="max_payload_bytes=4096"):
            pub.publish(noise, "cam-small")
        assert pub.redis.xlen(settings.shard_keys(0).frames) == 1
