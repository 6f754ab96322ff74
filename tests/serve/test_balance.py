"""Shards spread over the consumer replicas (workers.serve.balance) on a real redis-server, no Ray: a
second consumer joining takes a shard from the first, its leaving gives it back, and the books balance."""

from __future__ import annotations

import asyncio
from collections import Counter

import pytest
from stream_helpers import (
    FakePipeline,
    cameras_on_distinct_shards,
    consumer_settings,
    finished_count,
    frame_payload,
    outputs,
    publish,
    wait_until,
)

from workers.serve.balance import BalancedStreamConsumer, ShardBalancer
from workers.streams import connect

pytestmark = pytest.mark.timeout(120)


class SlowPipeline(FakePipeline):
    """Slow enough that a backlog is still there when the second consumer joins."""

    async def __call__(self, images):
        await asyncio.sleep(0.05)
        return await super().__call__(images)


def test_a_joining_consumer_takes_a_shard_and_a_leaving_one_gives_it_back(redis_url, sync_redis) -> None:
    settings = consumer_settings(redis_url, shards=2, lease_ttl_ms=1000)
    cameras = cameras_on_distinct_shards(2)
    per_round = 20  # frames per camera in each of three rounds: alone, split, alone again
    per_camera = 3 * per_round

    def publish_round(number: int) -> None:
        for frame_id in range(number * per_round, (number + 1) * per_round):
            for camera in cameras:
                publish(sync_redis, settings, camera, frame_payload(camera, frame_id))

    def finished(rounds: int) -> bool:
        return finished_count(sync_redis, settings) >= 2 * per_round * rounds

    publish_round(0)
    registry = f"{settings.stream_prefix}:consumers:test"

    async def scenario() -> tuple[list[int], list[int], list[int], dict]:
        clients = [connect(redis_url, settings) for _ in range(2)]
        first, second = (
            BalancedStreamConsumer(client, SlowPipeline(), settings, name=name)
            for client, name in zip(clients, ("first", "second"), strict=True)
        )
        balancers = [
            ShardBalancer(consumer, client, registry, settings.lease_ttl_ms)
            for consumer, client in zip((first, second), clients, strict=True)
        ]
        await balancers[0].tick()
        first_task = asyncio.create_task(first.run())
        first_loop = asyncio.create_task(balancers[0].run(0.1))
        await wait_until(lambda: first.held_shards == [0, 1], 10, "the first consumer on both shards")
        alone = list(first.held_shards)

        await balancers[1].tick()
        second_task = asyncio.create_task(second.run())
        second_loop = asyncio.create_task(balancers[1].run(0.1))
        await wait_until(lambda: len(first.held_shards) == 1 and len(second.held_shards) == 1, 20, "a split")
        split = sorted(first.held_shards + second.held_shards)
        await wait_until(lambda: finished(1), 60, "the first round")
        publish_round(1)  # each consumer works the frames of its own shard
        await wait_until(lambda: finished(2), 60, "the second round")

        # The second one leaves (graceful drain + out of the registry): the first takes everything again.
        second_loop.cancel()
        second.stop()
        await asyncio.wait_for(second_task, 20)
        await balancers[1].leave()
        await wait_until(lambda: first.held_shards == [0, 1], 20, "the first consumer on both shards again")
        back = list(first.held_shards)
        publish_round(2)
        await wait_until(lambda: finished(3), 60, "every frame")
        first_loop.cancel()
        first.stop()
        await asyncio.wait_for(first_task, 20)
        stats = {"first": first.stats(), "second": second.stats()}
        for client in clients:
            await client.aclose()
        return alone, split, back, stats

    alone, split, back, stats = asyncio.run(scenario())
    assert alone == [0, 1] and split == [0, 1] and back == [0, 1]
    assert stats["first"]["frames_ok"] > 0 and stats["second"]["frames_ok"] > 0  # both did work
    found = outputs(sync_redis, settings)
    done = Counter((r["camera_id"], r["frame_id"]) for r in found["results"])
    assert set(done.values()) == {1}  # none twice
    assert sorted(done) == sorted((c, f) for c in cameras for f in range(per_camera))  # none lost
    assert not found["dead"]
    for camera in cameras:  # per-camera order survives the hand-overs
        ids = [r["frame_id"] for r in found["results"] if r["camera_id"] == camera]
        assert ids == sorted(ids)
