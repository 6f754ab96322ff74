"""StreamConsumer: holds shard leases and runs one ShardConsumer per held shard.

Every ``renew_interval_ms`` it renews the leases it holds (a refused renewal stops that shard's work at
once), takes free or lapsed shards up to ``max_shards`` (consumers beyond the shard count stand by and
take lapsed ones) and measures the backlog of every shard for metrics and autoscaling.

Stopping: ``stop()`` is graceful (no more reads, frames in flight are finished and published, leases
released). Cancelling ``run()``'s task is a crash: the shard tasks are cancelled and nothing is written,
so the leases lapse and the next owner finishes the frames.
"""

from __future__ import annotations

import asyncio
import builtins
import contextlib
import os
import socket
import time
import uuid
from collections.abc import Sequence
from typing import Any

import redis.asyncio as aioredis
import structlog
from redis.asyncio.cluster import RedisCluster
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff
from redis.exceptions import AuthenticationError, ConnectionError, OutOfMemoryError, TimeoutError

from schemas.settings import Settings
from workers.pipeline import FramePipeline
from workers.redis_errors import REDIS_UNREACHABLE
from workers.streams.failures import raise_if_cancel_requested
from workers.streams.lease import ShardLease
from workers.streams.shard import ShardConsumer
from workers.streams.stats import ConsumerStats

log = structlog.get_logger()


def connect(
    url: str, settings: Settings | None = None, *, retries: int = 10
) -> aioredis.Redis | RedisCluster:
    """An asyncio Redis client that rides out restarts: redis-py's Retry with exponential backoff
    (about 6 s in all before an error reaches the consumer, which then starts over). With
    ``settings.redis_cluster`` a cluster client (``url`` names any node; slots and failovers are followed)."""
    block_s = (settings.read_block_ms if settings else 500) / 1000
    options: dict[str, Any] = dict(
        retry=Retry(ExponentialBackoff(cap=1.0, base=0.02), retries),
        retry_on_error=[ConnectionError, TimeoutError],
        socket_connect_timeout=2.0,
        socket_timeout=block_s + 5.0,  # above XREADGROUP's BLOCK
        health_check_interval=10,
        # rediss://: the CA and client certificate from the settings (the URL's ssl_* query wins)
        **(settings or Settings()).redis_tls_options(url),
    )
    if settings is not None and settings.redis_cluster:
        return RedisCluster.from_url(url, **options)
    return aioredis.Redis.from_url(url, **options)


def default_consumer_name() -> str:
    return f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"


class StreamConsumer:
    """Consumes frames from the shards it can lease and publishes events, results and dead letters.

    Args:
        client: an asyncio Redis client (see ``connect``); not closed by the consumer.
        pipeline: a ``FramePipeline`` (``LocalPipeline`` or the Serve handle pipeline).
        settings: stream names, limits, bounds, lease timing, in-flight window (None: sized from the
            pipeline's backbone, ``workers.streams.window``), stale policy.
        name: consumer name in the group (default host-pid-random); fencing never relies on it.
        shards: which shards this consumer may take (default: all of ``settings.shards``).
        max_shards: at most this many shards held at once (default: no limit).
        call_batch: frames per pipeline call (default ``settings.read_batch``).
        drain_timeout_s: how long ``stop()`` waits for frames in flight before it cancels the shard
            tasks (those frames stay pending and the next owner finishes them).
    """

    def __init__(
        self,
        client: aioredis.Redis,
        pipeline: FramePipeline,
        settings: Settings | None = None,
        *,
        name: str | None = None,
        shards: Sequence[int] | None = None,
        max_shards: int | None = None,
        call_batch: int | None = None,
        drain_timeout_s: float = 60.0,
    ):
        self.client = client
        self.pipeline = pipeline
        self.settings = settings or Settings()
        self.name = name or default_consumer_name()
        self.shards = list(shards) if shards is not None else list(range(self.settings.shards))
        for shard in self.shards:
            self.settings.shard_keys(shard)  # validates the range
        self.max_shards = max_shards if max_shards is not None else len(self.shards)
        self.call_batch = call_batch
        self.drain_timeout_s = drain_timeout_s
        self._instance = uuid.uuid4().hex[:12]  # part of every fencing token this consumer mints
        self._stats = ConsumerStats()
        self._leases: dict[int, ShardLease] = {}
        self._workers: dict[int, ShardConsumer] = {}
        self._tasks: dict[int, asyncio.Task[None]] = {}
        self._backlog: dict[int, int] = {}
        self._stop = asyncio.Event()
        self._started_at: float | None = None
        self.log = log.bind(consumer=self.name)

    # ------------------------------------------------------------------ public API
    @property
    def held_shards(self) -> list[int]:
        return sorted(k for k, task in self._tasks.items() if not task.done())

    def stop(self) -> None:
        """Ask ``run()`` to finish gracefully; it returns once in-flight frames are published."""
        self._stop.set()

    def longest_call_s(self) -> float:
        """The oldest pipeline call still awaited by any shard worker, in seconds (0 when none is)."""
        return max((w.longest_call_s() for w in self._workers.values()), default=0.0)

    def stats(self) -> dict[str, Any]:
        """Counters since start plus current state (held shards, frames in flight, last backlog)."""
        data = self._stats.as_dict()
        data.update(
            consumer=self.name,
            shards_held=self.held_shards,
            in_flight=sum(w.in_flight for w in self._workers.values()),
            # per held shard: the in-flight window in use and what sized it (workers.streams.window)
            window={shard: w.window_size.as_dict() for shard, w in self._workers.items()},
            longest_call_s=self.longest_call_s(),
            backlog=dict(self._backlog),
            backlog_total=sum(self._backlog.values()),
            uptime_s=time.monotonic() - self._started_at if self._started_at else 0.0,
        )
        return data

    async def backlog(self) -> dict[int, int]:
        """Frames waiting per shard: XLEN of its frames stream (acknowledged entries are deleted, so
        this counts undelivered plus pending entries)."""
        async with self.client.pipeline(transaction=False) as pipe:
            for shard in self.shards:
                pipe.xlen(self.settings.shard_keys(shard).frames)
            lengths = await pipe.execute()
        self._backlog = {shard: int(n) for shard, n in zip(self.shards, lengths, strict=True)}
        return dict(self._backlog)

    async def run(self) -> None:
        """Lease, consume and publish until ``stop()``; cancelling this task is a crash (see module)."""
        self._started_at = time.monotonic()
        self.log.info("consumer_started", shards=self.shards, max_shards=self.max_shards)
        interval = self.settings.renew_interval_ms / 1000
        # Renewals run on their own: a tick held up by an unreachable node (acquire, backlog) must not
        # let the leases of shards on healthy nodes lapse.
        keeper = asyncio.create_task(self._keep_leases(interval), name=f"leases-{self.name}")
        try:
            while not self._stop.is_set():
                raise_if_cancel_requested()  # a cancelled consumer must never renew its leases again
                await self._tick()
                await self._wait_for_stop(interval)
            await self._stop_keeper(keeper)
            await self._shutdown(interval)
        except asyncio.CancelledError:
            await self._stop_keeper(keeper)
            await self._cancel_workers(interval)
            raise
        finally:
            await self._stop_keeper(keeper)

    async def _keep_leases(self, interval: float) -> None:
        while True:
            try:
                await self._renew(interval)
            except Exception as error:  # noqa: BLE001 - the keeper must outlive any one reply; an unrenewed
                # lease stops its shard's work by itself at the local deadline (ShardConsumer checks held)
                self._stats.redis_errors += 1
                self.log.error("lease_renewal_failed", error=repr(error))
            await asyncio.sleep(interval)

    @staticmethod
    async def _stop_keeper(keeper: asyncio.Task[None]) -> None:
        if keeper.done():
            return
        keeper.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await keeper

    async def _wait_for_stop(self, timeout: float) -> None:
        # asyncio.timeout, not asyncio.wait_for: on Python 3.11 wait_for returns normally, swallowing
        # the cancellation, when it is cancelled just as the awaited thing completes.
        with contextlib.suppress(builtins.TimeoutError):
            async with asyncio.timeout(timeout):
                await self._stop.wait()

    async def _cancel_workers(self, interval: float) -> None:
        """A crash: cancel the shard tasks and wait for them, so that none outlives ``run()``. A task
        that swallowed its cancellation (see ``raise_if_cancel_requested``) is cancelled again."""
        deadline = time.monotonic() + max(10 * interval, 5.0)
        running = [t for t in self._tasks.values() if not t.done()]
        while running and time.monotonic() < deadline:
            for task in running:
                task.cancel()
            await asyncio.wait(running, timeout=interval)
            running = [t for t in running if not t.done()]
        if running:
            self.log.error("shard_tasks_ignore_cancel", tasks=[t.get_name() for t in running])

    # ------------------------------------------------------------------ internals
    async def _tick(self) -> None:
        try:
            await self._reap()
            try:
                await self._acquire()
            except OutOfMemoryError as exc:  # INCR / SET NX refused: hold what we have, wait for memory
                self._stats.note_redis_full(True)
                self.log.warning("redis_out_of_memory", during="lease acquire", error=str(exc))
            await self.backlog()
        except AuthenticationError as exc:  # a ConnectionError to redis-py, but no retry will mend it
            self.log.error(
                "redis_auth_failed", error=str(exc), hint="check the Redis URL's user and password"
            )
            raise
        except REDIS_UNREACHABLE as exc:
            self._stats.redis_errors += 1
            self.log.warning("redis_unavailable", error=repr(exc))
            self._drop_lapsed()

    async def _renew(self, timeout_s: float) -> None:
        """Renew every working lease at once, each bounded by ``timeout_s`` (a compare-and-PEXPIRE
        script: Redis runs it at maxmemory too); one that cannot be told holds until its local deadline."""
        working = [
            (shard, lease, task)
            for shard, lease in list(self._leases.items())
            if (task := self._tasks.get(shard)) is not None and not task.done()
        ]

        async def bounded(lease: ShardLease) -> bool:
            async with asyncio.timeout(timeout_s):
                return await lease.renew()

        replies = await asyncio.gather(*(bounded(lease) for _, lease, _ in working), return_exceptions=True)
        for (_shard, lease, task), reply in zip(working, replies, strict=True):
            if isinstance(reply, (*REDIS_UNREACHABLE, builtins.TimeoutError)):
                renewed = lease.held  # cannot tell: keep working until the local deadline passes
                if not renewed:
                    lease.lose("no renewal within the ttl")
            elif isinstance(reply, BaseException):
                raise reply
            else:
                renewed = reply
            if not renewed:
                self._stats.leases_lost += 1
                task.cancel()  # stop working the shard at once; the fence covers the rest

    def _drop_lapsed(self) -> None:
        for shard, lease in self._leases.items():
            task = self._tasks.get(shard)
            if task is not None and not task.done() and not lease.held:
                lease.lose("no renewal within the ttl")
                self._stats.leases_lost += 1
                task.cancel()

    async def _reap(self) -> None:
        """Forget finished shard tasks; a crashed one is logged and its lease released (retaken later)."""
        for shard, task in list(self._tasks.items()):
            if not task.done():
                continue
            del self._tasks[shard]
            self._workers.pop(shard, None)
            if not task.cancelled() and task.exception() is not None:
                self.log.error("shard_worker_failed", shard=shard, exc_info=task.exception())
                await self._leases[shard].release()

    async def _acquire(self) -> None:
        if len(self._tasks) >= self.max_shards:
            return
        # Start at a consumer-specific shard so that consumers spread over the shards.
        start = int(self._instance, 16) % len(self.shards) if self.shards else 0
        for shard in self.shards[start:] + self.shards[:start]:
            if len(self._tasks) >= self.max_shards:
                return
            if shard in self._tasks:
                continue
            lease = self._leases.get(shard)
            if lease is None:
                keys = self.settings.shard_keys(shard)
                lease = ShardLease(self.client, keys, self.settings.lease_ttl_ms, self._instance)
                self._leases[shard] = lease
            if await lease.acquire():
                self._stats.leases_acquired += 1
                self._stats.redis_full = False  # INCR and SET NX went through
                worker = ShardConsumer(
                    self.client,
                    shard,
                    lease,
                    self.pipeline,
                    self.settings,
                    self.name,
                    self._stats,
                    call_batch=self.call_batch,
                )
                self._workers[shard] = worker
                self._tasks[shard] = asyncio.create_task(worker.run(), name=f"shard-{shard}-{self.name}")

    async def _shutdown(self, interval: float) -> None:
        """Drain: workers stop reading and publish what is in flight while leases keep being renewed."""
        for worker in self._workers.values():
            worker.stop()
        deadline = time.monotonic() + self.drain_timeout_s
        while True:
            raise_if_cancel_requested()
            with contextlib.suppress(*REDIS_UNREACHABLE):
                await self._renew(interval)
            running = [t for t in self._tasks.values() if not t.done()]
            if not running:
                break
            if time.monotonic() > deadline:  # a stuck pipeline: give up the window, the next owner claims it
                self.log.warning("drain_timed_out", shards=self.held_shards, timeout_s=self.drain_timeout_s)
                await self._cancel_workers(interval)
                break
            await asyncio.wait(running, timeout=interval)
        with contextlib.suppress(*REDIS_UNREACHABLE):
            await self._reap()
        for lease in self._leases.values():
            with contextlib.suppress(*REDIS_UNREACHABLE):
                await lease.release()
        self.log.info("consumer_stopped", **{k: v for k, v in self.stats().items() if isinstance(v, int)})
