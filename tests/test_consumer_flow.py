"""The stream consumer end to end on a real redis-server: order, events, dead letters, conversions, stale."""

from __future__ import annotations

import asyncio
import time
from collections import Counter

import msgpack
import pytest
import redis
from stream_helpers import (
    FakePipeline,
    cameras_on_distinct_shards,
    consumer_settings,
    finished_count,
    frame_payload,
    image_bytes,
    outputs,
    publish,
    read_messages,
    run_scenario,
    run_until_finished,
    wait_until,
)

from schemas.wire import DeadLetter, DeadReason, FrameResult, PersonEvent
from workers.streams import StreamConsumer, connect


def _assert_books_balance(client: redis.Redis, settings, stats: dict, expected: int) -> dict:
    found = outputs(client, settings)
    assert len(found["results"]) + len(found["dead"]) == expected
    assert stats["frames_acked"] == stats["frames_ok"] + stats["frames_stale"] + stats["frames_dead"]
    # Acknowledged entries are deleted: nothing left in the frames streams, nothing pending.
    for keys in settings.all_shard_keys():
        assert client.xlen(keys.frames) == 0
        assert client.xpending(keys.frames, settings.group)["pending"] == 0
    return found


def test_two_cameras_two_shards_in_order_with_the_model(redis_url, sync_redis, pose_pipeline):
    settings = consumer_settings(redis_url, in_flight=4, read_batch=2)
    cam_a, cam_b = cameras_on_distinct_shards(2)
    per_camera = 4
    for frame_id in range(per_camera):
        for camera in (cam_a, cam_b):
            publish(
                sync_redis, settings, camera, frame_payload(camera, 1000 + frame_id, meta={"n": frame_id})
            )

    async def scenario() -> dict:
        client = connect(redis_url, settings)
        consumer = StreamConsumer(client, pose_pipeline, settings, name="flow")
        await run_until_finished(consumer, sync_redis, settings, 2 * per_camera)
        stats = consumer.stats()
        await client.aclose()
        return stats

    stats = run_scenario(scenario())
    found = _assert_books_balance(sync_redis, settings, stats, 2 * per_camera)
    assert stats["frames_ok"] == 2 * per_camera and stats["frames_dead"] == 0, stats
    assert stats["shards_held"] == []  # released at stop
    results = [FrameResult.model_validate(r) for r in found["results"]]
    for camera in (cam_a, cam_b):
        ids = [r.frame_id for r in results if r.camera_id == camera]
        assert ids == [1000 + i for i in range(per_camera)]  # per-camera order
    for result in results:
        assert result.status == "ok"
        assert (result.width, result.height) == (96, 96)
        assert result.latency_ms >= 0
        assert result.meta == {"n": result.frame_id - 1000}
        assert result.persons == len(result.event_ids)
    events = [PersonEvent.model_validate(e) for e in found["events"]]
    assert sorted(e.event_id for e in events) == sorted(i for r in results for i in r.event_ids)
    assert all(e.model == pose_pipeline.model_version for e in events)
    # each camera's outputs went to its own shard's streams
    for camera, keys in zip((cam_a, cam_b), settings.all_shard_keys(), strict=True):
        assert {r["camera_id"] for r in read_messages(sync_redis, keys.results)} == {camera}


def test_events_match_the_pipeline_and_keep_order_across_a_window(redis_url, sync_redis):
    settings = consumer_settings(redis_url, in_flight=6, read_batch=3)
    cam_a, cam_b = cameras_on_distinct_shards(2)
    for frame_id in range(9):
        for camera in (cam_a, cam_b):
            image = image_bytes(64 + 8 * frame_id, 48, seed=frame_id)
            publish(sync_redis, settings, camera, frame_payload(camera, frame_id, image))

    # Frames finish out of order (later ones sooner) so the window must reorder them.
    class Shuffling(FakePipeline):
        async def __call__(self, images):
            await asyncio.sleep(0.02 * (400 - images[0].shape[1]) / 64)
            return await super().__call__(images)

    pipeline = Shuffling()

    async def scenario() -> dict:
        client = connect(redis_url, settings)
        consumer = StreamConsumer(client, pipeline, settings, call_batch=1)
        await run_until_finished(consumer, sync_redis, settings, 18)
        await client.aclose()
        return consumer.stats()

    stats = run_scenario(scenario())
    found = _assert_books_balance(sync_redis, settings, stats, 18)
    assert stats["events_published"] == 18
    for camera in (cam_a, cam_b):
        assert [r["frame_id"] for r in found["results"] if r["camera_id"] == camera] == list(range(9))
        camera_events = [PersonEvent.model_validate(e) for e in found["events"] if e["camera_id"] == camera]
        assert [e.event_id for e in camera_events] == [f"{camera}:{i}:0" for i in range(9)]
        assert [e.width for e in camera_events] == [64 + 8 * i for i in range(9)]
        assert all(e.model == "fake-1" and e.bbox[2] == e.width for e in camera_events)


def test_bad_input_is_dead_lettered_with_its_reason_while_good_frames_flow(redis_url, sync_redis):
    settings = consumer_settings(redis_url, shards=1, max_payload_bytes=64 * 1024, max_pixels=200 * 200)
    camera = "cam-bad"
    huge_png = bytearray(image_bytes(32, 32))
    huge_png[16:24] = (50_000).to_bytes(4, "big") + (40_000).to_bytes(4, "big")  # IHDR claims 50000x40000
    bad = {
        "not_msgpack": b"\xc1 definitely not msgpack",
        "schema": msgpack.packb({"v": 1, "camera_id": camera, "frame_id": "five", "ts": 1.0, "image": b"x"}),
        "bad_image": frame_payload(camera, 2, b"\x89PNG\r\n\x1a\n" + b"\x00" * 40),
        "too_large": frame_payload(camera, 3, image_bytes(300, 300, fmt=".png")),
        "too_many_pixels": frame_payload(camera, 4, bytes(huge_png)),
    }
    assert len(bad["too_large"]) > settings.max_payload_bytes
    good_ids = []
    for index, payload in enumerate(bad.values()):
        good_ids.append(100 + index)
        publish(sync_redis, settings, camera, frame_payload(camera, 100 + index, image_bytes(seed=index)))
        publish(sync_redis, settings, camera, payload)
    conversions = {"gray": 200, "bgra": 201, "gray16": 202}
    for kind, frame_id in conversions.items():
        publish(sync_redis, settings, camera, frame_payload(camera, frame_id, image_bytes(40, 30, kind=kind)))
    publish(sync_redis, settings, camera, frame_payload(camera, 203, image_bytes(40, 30, fmt=".jpg")))
    sync_redis.xadd(settings.shard_keys(0).frames, {"other": b"no msg field"})
    total = 2 * len(bad) + len(conversions) + 2

    pipeline = FakePipeline()

    async def scenario() -> dict:
        client = connect(redis_url, settings)
        consumer = StreamConsumer(client, pipeline, settings)
        await run_until_finished(consumer, sync_redis, settings, total)
        await client.aclose()
        return consumer.stats()

    stats = run_scenario(scenario())
    found = _assert_books_balance(sync_redis, settings, stats, total)
    letters = [DeadLetter.model_validate(d) for d in found["dead"]]
    assert Counter(d.reason for d in letters) == Counter(list(bad) + ["schema"])
    assert stats["dead_by_reason"] == dict(Counter(d.reason for d in letters))
    for letter in letters:
        assert len(letter.payload) <= settings.dead_payload_bytes and letter.error
        assert letter.source_id
        if letter.reason in ("bad_image", "too_many_pixels"):
            assert letter.camera_id == camera and letter.frame_id in (2, 4)
        if letter.reason == "too_large":  # never unpacked, so who sent it is unknown
            assert letter.camera_id is None and len(letter.payload) == settings.dead_payload_bytes
    schema_letter = next(d for d in letters if d.reason == "schema" and d.camera_id is not None)
    assert schema_letter.frame_id is None and "frame_id" in schema_letter.error
    ok = {r["frame_id"]: r for r in found["results"]}
    assert sorted(ok) == good_ids + [200, 201, 202, 203]
    assert all(r["status"] == "ok" for r in ok.values())
    for frame_id in (200, 201, 202, 203):  # grayscale, alpha, 16-bit and JPEG converted, not rejected
        assert (ok[frame_id]["width"], ok[frame_id]["height"]) == (40, 30)
    assert pipeline.images.count((40, 30)) == 4  # every one reached the pipeline as 8-bit BGR


@pytest.mark.parametrize("how", ["struck_elsewhere", "keeps_failing"])
def test_poison_frames_are_dead_lettered(redis_url, sync_redis, how):
    settings = consumer_settings(redis_url, shards=1, max_deliveries=3)
    keys = settings.shard_keys(0)
    camera = "cam-poison"
    poison_image = image_bytes(24, 24)  # the failing pipeline rejects exactly this size
    poison_id = publish(sync_redis, settings, camera, frame_payload(camera, 5, poison_image))
    for frame_id in (6, 7, 8):
        publish(sync_redis, settings, camera, frame_payload(camera, frame_id))
    if how == "struck_elsewhere":
        # Earlier owners ran the frame alone and died with it, again and again.
        sync_redis.xgroup_create(keys.frames, settings.group, id="0", mkstream=True)
        sync_redis.xreadgroup(settings.group, "died-1", {keys.frames: ">"}, count=1)
        sync_redis.xclaim(keys.frames, settings.group, "died-2", 0, [poison_id], retrycount=3)
        sync_redis.hset(keys.strikes, poison_id, settings.max_deliveries)
        pipeline = FakePipeline()
    else:
        pipeline = FakePipeline(fail=lambda image: image.shape[:2] == (24, 24))

    async def scenario() -> dict:
        client = connect(redis_url, settings)
        consumer = StreamConsumer(client, pipeline, settings)
        await run_until_finished(consumer, sync_redis, settings, 4)
        await client.aclose()
        return consumer.stats()

    stats = run_scenario(scenario())
    found = _assert_books_balance(sync_redis, settings, stats, 4)
    assert [d["reason"] for d in found["dead"]] == [DeadReason.POISON.value]
    assert found["dead"][0]["source_id"] == poison_id
    assert (found["dead"][0]["camera_id"], found["dead"][0]["frame_id"]) == (camera, 5)
    assert not sync_redis.exists(keys.strikes) or sync_redis.hlen(keys.strikes) == 0
    assert [r["frame_id"] for r in found["results"]] == [6, 7, 8]
    assert stats["redeliveries"] >= 1
    if how == "keeps_failing":
        assert stats["pipeline_errors"] >= settings.max_deliveries


def test_stale_frames_by_age(redis_url, sync_redis):
    settings = consumer_settings(redis_url, shards=1, stale_max_age_s=0.3)
    camera = "cam-old"
    for frame_id in range(3):
        publish(sync_redis, settings, camera, frame_payload(camera, frame_id))
    time.sleep(0.5)  # on the Redis clock these frames are now older than 0.3 s

    async def scenario() -> dict:
        client = connect(redis_url, settings)
        consumer = StreamConsumer(client, FakePipeline(), settings)
        task = asyncio.create_task(consumer.run())
        await wait_until(lambda: finished_count(sync_redis, settings) >= 3, what="stale results")
        for frame_id in range(3, 5):  # fresh frames are processed
            publish(sync_redis, settings, camera, frame_payload(camera, frame_id))
        await wait_until(lambda: finished_count(sync_redis, settings) >= 5, what="fresh results")
        consumer.stop()
        await task
        await client.aclose()
        return consumer.stats()

    stats = run_scenario(scenario())
    found = _assert_books_balance(sync_redis, settings, stats, 5)
    statuses = [(r["frame_id"], r["status"]) for r in found["results"]]
    assert statuses == [(0, "stale"), (1, "stale"), (2, "stale"), (3, "ok"), (4, "ok")]
    assert stats["stale_by_rule"] == {"age": 3}
    assert all(r["persons"] == 0 and r["event_ids"] == [] for r in found["results"][:3])
    assert len(found["events"]) == 2


def test_stale_frames_behind_a_newer_one_under_backlog(redis_url, sync_redis):
    settings = consumer_settings(redis_url, shards=1, stale_backlog=3, read_batch=8, in_flight=8)
    cam_a, cam_b = "cam-a", "cam-b"
    for frame_id in range(4):
        for camera in (cam_a, cam_b):
            publish(sync_redis, settings, camera, frame_payload(camera, frame_id))

    async def scenario() -> dict:
        client = connect(redis_url, settings)
        consumer = StreamConsumer(client, FakePipeline(), settings)
        await run_until_finished(consumer, sync_redis, settings, 8)
        await client.aclose()
        return consumer.stats()

    stats = run_scenario(scenario())
    found = _assert_books_balance(sync_redis, settings, stats, 8)
    for camera in (cam_a, cam_b):
        statuses = [(r["frame_id"], r["status"]) for r in found["results"] if r["camera_id"] == camera]
        # all 8 read in one batch with a backlog of 8 > 3: only each camera's newest frame is run
        assert statuses == [(0, "stale"), (1, "stale"), (2, "stale"), (3, "ok")]
    assert stats["stale_by_rule"] == {"behind": 6} and stats["frames_ok"] == 2
