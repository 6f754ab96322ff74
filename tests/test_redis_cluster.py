"""posestream on a real Redis Cluster (3 masters + 3 replicas): hash-tagged keys, per-slot subscriber reads,
and a master SIGKILLed while the worker has frames in flight (its replica takes over; the books balance)."""

from __future__ import annotations

import asyncio
import threading
import time
from collections import defaultdict

import pytest
from redis_cluster_helpers import LocalRedisCluster, require_cluster_tools
from stream_helpers import (
    FakePipeline,
    cameras_on_distinct_shards,
    consumer_settings,
    image_bytes,
    run_scenario,
    wait_until,
)

from schemas.settings import Settings
from schemas.wire import STREAM_FIELD, FrameResult
from workers.client import EventSubscriber, FramePublisher
from workers.client.subscriber import Received
from workers.streams import StreamConsumer, connect

pytestmark = pytest.mark.timeout(240)


@pytest.fixture
def cluster(tmp_path):
    require_cluster_tools()
    with LocalRedisCluster(tmp_path / "cluster") as running:
        yield running


def _finished(client, settings: Settings) -> int:
    return sum(client.xlen(keys.results) + client.xlen(keys.dead) for keys in settings.all_shard_keys())


def _collect(subscriber: EventSubscriber, into: list[Received], stop: threading.Event) -> None:
    for received in subscriber.entries(follow=True, stop=stop):
        into.append(received)


class SlowPipeline(FakePipeline):
    async def __call__(self, images):
        await asyncio.sleep(0.03)  # frames stay in flight long enough for the kill to land mid-window
        return await super().__call__(images)


def _publish(settings: Settings, cameras: list[str], frame_ids: range) -> None:
    with FramePublisher(settings=settings, max_backlog=10_000) as publisher:
        for frame_id in frame_ids:
            for camera in cameras:
                publisher.publish(image_bytes(seed=frame_id), camera, frame_id=frame_id, ts=1.0 + frame_id)


def test_one_shard_on_a_cluster_uses_one_slot_end_to_end(cluster):
    """S = 1 keeps plain names on a standalone Redis; on a cluster they would span slots (the fenced publish
    would be refused with CROSSSLOT), so there every key carries the {0} tag."""
    settings = consumer_settings(cluster.url, shards=1, redis_cluster=True)
    keys = settings.shard_keys(0)
    assert keys.frames == f"{settings.stream_prefix}:{{0}}:frames"
    _publish(settings, ["cam-one"], range(6))

    async def scenario() -> dict:
        client = connect(cluster.url, settings)
        consumer = StreamConsumer(client, FakePipeline(), settings)
        task = asyncio.create_task(consumer.run())
        sync = cluster.client()
        await wait_until(lambda: _finished(sync, settings) >= 6, what="six frames on the cluster")
        consumer.stop()
        async with asyncio.timeout(30):
            await task
        await client.aclose()
        sync.close()
        return consumer.stats()

    stats = run_scenario(scenario())
    assert stats["frames_acked"] == 6
    with EventSubscriber(settings=settings, kinds=("results",), start="0") as subscriber:
        results = list(subscriber.messages(follow=False))
    assert [(r.camera_id, r.frame_id, r.status) for r in results] == [("cam-one", i, "ok") for i in range(6)]


def test_a_killed_master_fails_over_and_the_books_balance(cluster):
    settings = consumer_settings(cluster.url, shards=3, redis_cluster=True, in_flight=4, read_batch=4)
    cameras = cameras_on_distinct_shards(shards=3, count=3)
    # The group subscriber reads every shard's slot one at a time, before, during and after the failover.
    received: list[Received] = []
    stop_reading = threading.Event()
    subscriber = EventSubscriber(
        settings=settings, kinds=("results", "dead"), group="books", start="0", block_ms=200
    )
    reader = threading.Thread(target=_collect, args=(subscriber, received, stop_reading), daemon=True)
    reader.start()
    _publish(settings, cameras, range(40))
    victim_key = settings.shard_keys(0).frames

    async def scenario() -> dict:
        client = connect(cluster.url, settings)
        consumer = StreamConsumer(client, SlowPipeline(), settings)
        task = asyncio.create_task(consumer.run())
        sync = cluster.client()
        await wait_until(lambda: _finished(sync, settings) >= 30, what="work before the kill")
        killed = cluster.kill_master_of(victim_key)
        await asyncio.to_thread(cluster.wait_healthy, 60.0)  # the replica is promoted
        await asyncio.to_thread(_publish, settings, cameras, range(40, 60))
        sync.close()
        sync = cluster.client()  # a fresh slot map: the old one still names the dead master
        await wait_until(lambda: _finished(sync, settings) >= 180, timeout_s=90, what="every frame finished")
        consumer.stop()
        async with asyncio.timeout(30):
            await task
        await client.aclose()
        assert killed.port != cluster.master_of(victim_key).port  # served by the promoted replica now
        sync.close()
        return consumer.stats()

    stats = run_scenario(scenario(), timeout_s=180)
    check = cluster.client()
    try:
        # The books: one final outcome per published frame, in camera order, no frame left in the streams.
        for keys in settings.all_shard_keys():
            assert check.xlen(keys.frames) == 0
            assert check.xpending(keys.frames, settings.group)["pending"] == 0
            found = [FrameResult.from_bytes(f[STREAM_FIELD.encode()]) for _, f in check.xrange(keys.results)]
            for camera in {r.camera_id for r in found}:
                assert [r.frame_id for r in found if r.camera_id == camera] == list(range(60)), camera
                assert all(r.status == "ok" for r in found if r.camera_id == camera)
        everything = {(camera, i) for camera in cameras for i in range(60)}
        seen_all = _wait_for(
            lambda: {(r.message.camera_id, r.message.frame_id) for r in received} >= everything
        )
    finally:
        stop_reading.set()
        reader.join(timeout=10)
        check.close()
        subscriber.close()
    assert seen_all, f"the subscriber saw {len(received)} results, not all 180"
    copies: dict[tuple[str, int], list[FrameResult]] = defaultdict(list)
    for item in received:
        assert item.kind == "results"
        copies[(item.message.camera_id, item.message.frame_id)].append(item.message)
    # A result read twice (its ack lost in the failover) is the same message both times.
    assert all(all(copy == same[0] for copy in same) for same in copies.values())
    assert stats["redis_errors"] + stats["leases_lost"] >= 1  # the kill was felt, and ridden out


def _wait_for(condition, timeout_s: float = 30.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True
