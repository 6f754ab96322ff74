"""Spreading the shards over the consumer replicas, so that a replica the autoscaler adds takes work.

A ``StreamConsumer`` takes every free shard up to its ``max_shards``; alone, the first replica would hold
all S shards and every replica added later would only stand by. Each FrameConsumer therefore keeps a
heartbeat in a Redis sorted set (``{prefix}:consumers``, scored by the Redis clock) and, from the number
of live replicas n, holds at most ``ceil(S / n)`` shards: when n grows it sheds its excess shards
gracefully (no more reads, frames in flight published, lease released) and a newcomer takes them; when a
replica drains away, the others' share grows and they take its released shards. Ownership stays with the
lease and the fence (DESIGN.md, "Shards, ownership and the fence"): the registry only decides how many
shards each replica tries to hold, so a stale count costs time, never correctness.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
from typing import Any

import structlog

from workers.redis_errors import REDIS_UNREACHABLE
from workers.streams import StreamConsumer

log = structlog.get_logger()


class BalancedStreamConsumer(StreamConsumer):
    """A ``StreamConsumer`` that can give one shard back gracefully (``shed``)."""

    async def shed(self, shard: int) -> None:
        """Stop working ``shard``: read no more, publish the frames in flight, release the lease."""
        worker, task = self._workers.get(shard), self._tasks.get(shard)
        if worker is None or task is None:
            return
        worker.stop()
        with contextlib.suppress(Exception, asyncio.CancelledError):
            await asyncio.shield(task)
        lease = self._leases.get(shard)
        if lease is not None:
            try:
                await lease.release()
            except REDIS_UNREACHABLE as exc:  # redis' ConnectionError/TimeoutError, not the builtins
                self.log.warning("shard_release_failed", shard=shard, error=repr(exc))  # it lapses in a ttl
        self.log.info("shard_shed", shard=shard)


class ShardBalancer:
    """Heartbeat in the consumers registry and keep this replica's share of the shards."""

    def __init__(self, consumer: BalancedStreamConsumer, client: Any, registry_key: str, ttl_ms: int) -> None:
        self.consumer = consumer
        self.client = client
        self.registry_key = registry_key
        self.ttl_ms = ttl_ms
        self.live_consumers = 1
        self._shedding: set[int] = set()

    def share(self, live_consumers: int) -> int:
        return max(1, math.ceil(len(self.consumer.shards) / max(1, live_consumers)))

    async def tick(self) -> int:
        """One heartbeat and rebalance; returns this replica's share (max shards)."""
        seconds, micros = await self.client.time()
        now_ms = int(seconds) * 1000 + int(micros) // 1000
        async with self.client.pipeline(transaction=False) as pipe:
            pipe.zadd(self.registry_key, {self.consumer.name: now_ms})
            pipe.zremrangebyscore(self.registry_key, "-inf", now_ms - self.ttl_ms)
            pipe.zcard(self.registry_key)
            pipe.pexpire(self.registry_key, self.ttl_ms * 10)
            *_, live, _ = await pipe.execute()
        self.live_consumers = int(live)
        share = self.share(self.live_consumers)
        self.consumer.max_shards = share
        held = [shard for shard in self.consumer.held_shards if shard not in self._shedding]
        for shard in held[share:]:
            self._shedding.add(shard)
            task = asyncio.create_task(self.consumer.shed(shard), name=f"shed-{shard}")
            task.add_done_callback(lambda _, shard=shard: self._shedding.discard(shard))
        if held[share:]:
            log.info("shards_rebalanced", live_consumers=self.live_consumers, share=share, shed=held[share:])
        return share

    async def run(self, interval_s: float) -> None:
        while True:
            try:
                await self.tick()
            except Exception as error:  # noqa: BLE001 - the registry is advisory; the leases still hold
                log.warning("shard_balance_failed", error=repr(error))
            await asyncio.sleep(interval_s)

    async def leave(self) -> None:
        """Drop out of the registry (graceful stop), so the others' share grows at once."""
        with contextlib.suppress(Exception):
            await self.client.zrem(self.registry_key, self.consumer.name)
