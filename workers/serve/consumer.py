"""FrameConsumer: the stream consumer (workers.streams) as a Serve deployment, and its autoscaling policy.

It receives no requests: its loop is an asyncio task started in ``__init__``, ``check_health()`` raises
once that task has ended or a pipeline call has been awaited past ``stuck_call_s`` (so Serve replaces the
replica), and ``record_autoscaling_stats()`` reports the
backlog of the shards it holds, which ``BacklogPolicy`` turns into a replica count (Serve's default
policy counts requests and would never scale a consumer). Replicas share the shards out among themselves
(``balance.ShardBalancer``), so an added replica takes shards from the others. Shutting a replica down
drains it: no more reads, frames in flight finished and published, leases released.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
from typing import Any

import numpy as np
import structlog
from ray import serve
from ray.serve.handle import DeploymentHandle

from model.predictions import PersonPrediction
from schemas.settings import Settings
from workers.serve.metrics import consumer_metrics, pipeline_metrics
from workers.serve.pipeline import ServePipeline, StageRetry

log = structlog.get_logger()


@serve.deployment
class FrameConsumer:
    def __init__(
        self,
        backbone: DeploymentHandle,
        residual: DeploymentHandle,
        activity: DeploymentHandle,
        config: dict[str, Any],
    ) -> None:
        self._settings = Settings(**config.get("settings", {}))
        self._stats_interval_s = float(config["stats_interval_s"])
        self._stuck_call_s = float(config["stuck_call_s"])
        self.pipeline = ServePipeline(
            backbone, residual, activity, StageRetry.model_validate(config["stage_retry"]), pipeline_metrics()
        )
        self._consumer: Any = None
        self._client: Any = None
        self._task: asyncio.Task[None] | None = None
        self._stats_task: asyncio.Task[None] | None = None
        self._balancer: Any = None
        self._balance_task: asyncio.Task[None] | None = None
        if config.get("consume", True):
            self._start()

    def _start(self) -> None:
        from workers.serve.balance import BalancedStreamConsumer, ShardBalancer
        from workers.streams import connect

        if not self._settings.redis_url:
            raise ValueError(
                "FrameConsumer needs a Redis URL: POSESTREAM_REDIS_URL, or POSESTREAM_REDIS_URL_FILE "
                "(a mounted secret), in the replicas' environment, or redis_url_file in the app's args"
            )
        context = serve.get_replica_context()
        self._client = connect(self._settings.redis_url, self._settings)
        self._consumer = BalancedStreamConsumer(
            self._client, self.pipeline, self._settings, name=f"{context.deployment}-{context.replica_tag}"
        )
        self._balancer = ShardBalancer(
            self._consumer,
            self._client,
            f"{self._settings.stream_prefix}:consumers:{context.app_name}",
            self._settings.lease_ttl_ms,
        )
        loop = asyncio.get_running_loop()
        self._task = loop.create_task(self._run(), name="frame-consumer")
        self._balance_task = loop.create_task(
            self._balancer.run(self._settings.renew_interval_ms / 1000), name="frame-consumer-balance"
        )
        self._stats_task = loop.create_task(self._report_forever(), name="frame-consumer-stats")

    async def _run(self) -> None:
        await self.pipeline.refresh()  # the model version the first frames are stamped with
        # Take no more than this replica's share of the shards from the very first tick.
        with contextlib.suppress(Exception):
            await self._balancer.tick()
        await self._consumer.run()

    # ------------------------------------------------------------------ Serve hooks
    def check_health(self) -> None:
        if self._task is not None and self._task.done():
            error = None if self._task.cancelled() else self._task.exception()
            raise RuntimeError(f"the consumer loop has ended: {error!r}")
        longest = self._consumer.longest_call_s() if self._consumer is not None else 0.0
        if longest > self._stuck_call_s:
            # Stage calls time out well before this: something below them hangs. Replacing the replica
            # lets its leases lapse, and the next owner retries the frames.
            raise RuntimeError(f"a pipeline call has been awaited for {longest:.0f} s (stuck_call_s)")

    async def record_autoscaling_stats(self) -> dict[str, float]:
        """The backlog of the shards this replica holds (stand-by replicas report 0) and the shard count,
        which caps the replicas ``BacklogPolicy`` asks for."""
        if self._consumer is None:
            return {"backlog": 0.0, "shards_held": 0.0, "shards": float(self._settings.shards)}
        stats = self._consumer.stats()
        held = set(stats["shards_held"])
        backlog = sum(n for shard, n in stats["backlog"].items() if shard in held)
        shards = float(self._settings.shards)
        return {"backlog": float(backlog), "shards_held": float(len(held)), "shards": shards}

    async def drain(self) -> dict[str, Any]:
        """Stop reading, finish and publish the frames in flight, release the leases; returns the stats.

        ``posestream serve`` calls it before deleting the app, while the model stages still run."""
        if self._consumer is None:
            return self.stats()
        if self._task is not None and not self._task.done():
            self._consumer.stop()
            with contextlib.suppress(Exception):
                await self._task
        # Out of the shard registry, so that the other replicas take this one's share at once.
        if self._balance_task is not None:
            self._balance_task.cancel()
        await self._balancer.leave()
        return self.stats()

    async def __del__(self) -> None:
        """Graceful shutdown (Serve waits up to graceful_shutdown_timeout_s): drain, then let go."""
        await self.drain()
        if self._stats_task is not None:
            self._stats_task.cancel()
        if self._client is not None:
            with contextlib.suppress(Exception):
                await self._client.aclose()

    # ------------------------------------------------------------------ calls (tests, bench, operators)
    async def infer(self, images: list[np.ndarray]) -> tuple[str, list[list[PersonPrediction]]]:
        """Run frames through the stages without Redis: (model version, persons per frame)."""
        version = self.pipeline.model_version
        persons = await self.pipeline(images)
        return version if version != "unknown" else self.pipeline.model_version, persons

    def stats(self) -> dict[str, Any]:
        """The consumer's counters and state (empty when not consuming)."""
        if self._consumer is None:
            return {}
        return {
            **self._consumer.stats(),
            "loop_running": self._task is not None and not self._task.done(),
            "max_shards": self._consumer.max_shards,
            "live_consumers": self._balancer.live_consumers,
        }

    # ------------------------------------------------------------------ metrics
    async def _report_forever(self) -> None:
        while True:
            try:
                await self._report()
            except Exception as error:  # noqa: BLE001 - metrics must never stop the consumer
                log.warning("consumer_metrics_failed", error=repr(error))
            await asyncio.sleep(self._stats_interval_s)

    async def _report(self) -> None:
        try:  # the window follows the backbone's batch size and replicas (workers.streams.window)
            await self.pipeline.refresh_capacity()
        except Exception as error:  # noqa: BLE001 - the last known figures stay; frames go on
            log.warning("backbone_capacity_unknown", error=repr(error))
        stats = self._consumer.stats()
        metrics = consumer_metrics()
        metrics.record(stats, stats.get("dead_by_reason", {}))
        metrics.windows({shard: size["frames"] for shard, size in stats["window"].items()})
        held = stats["shards_held"]
        pending: dict[int, int] = {}
        for shard in held:
            frames = self._settings.shard_keys(shard).frames
            summary = await self._client.xpending(frames, self._settings.group)
            pending[shard] = int(summary["pending"])
        metrics.shards({shard: stats["backlog"].get(shard, 0) for shard in held}, pending)


class BacklogPolicy:
    """Consumers from the backlog their replicas report: one replica per ``frames_per_replica`` waiting
    frames, within the deployment's min/max replicas and never more than the shard count the replicas
    report (a consumer beyond it would only stand by). Configured in ``autoscaling_config.policy`` of the
    deploy file; Serve applies its ``upscale_delay_s``/``downscale_delay_s`` to what this returns."""

    def __init__(self, frames_per_replica: float) -> None:
        if frames_per_replica <= 0:
            raise ValueError(f"frames_per_replica must be positive, got {frames_per_replica}")
        self.frames_per_replica = frames_per_replica

    def __call__(self, ctx: Any) -> tuple[int, dict[str, Any]]:
        metrics = ctx.aggregated_metrics or {}
        backlog = sum(metrics.get("backlog", {}).values())
        wanted = max(1, math.ceil(backlog / self.frames_per_replica))
        shards = max(metrics.get("shards", {}).values(), default=None)
        if shards is not None:
            wanted = min(wanted, max(1, int(shards)))
        low, high = ctx.capacity_adjusted_min_replicas, ctx.capacity_adjusted_max_replicas
        return min(high, max(low, wanted)), {"backlog": backlog}
