"""Prometheus metrics through ``ray.util.metrics``.

Ray exports them at each node's metrics endpoint (``ray start --metrics-export-port``) with a ``ray_``
prefix, counters with a ``_total`` suffix, about 10 s after they move. Each process creates its metrics
once (``stage_metrics()`` / ``pipeline_metrics()`` / ``consumer_metrics()``), lazily, inside Ray.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping

from ray.util import metrics

# Every series posestream exports (name without Ray's ``ray_`` prefix → kind): the Grafana dashboard and
# the alert rules may query only these and Ray's own (tests/test_dashboards.py checks it).
EXPORTED: dict[str, str] = {
    "posestream_batch_size": "histogram",
    "posestream_stage_compute_ms": "histogram",
    "posestream_stage_items": "counter",
    "posestream_stage_latency_ms": "histogram",
    "posestream_stage_retries": "counter",
    "posestream_stage_failures": "counter",
    "posestream_frames_dead": "counter",
    "posestream_camera_frames": "counter",
    "posestream_backlog": "gauge",
    "posestream_pending": "gauge",
    "posestream_shards_owned": "gauge",
    "posestream_redis_full": "gauge",
    "posestream_window": "gauge",
}

# Bucket edges, not tuning: batches are counted in frames, latencies in milliseconds.
BATCH_SIZE_BUCKETS = [1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 48, 64]
LATENCY_MS_BUCKETS = [1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10000, 30000]


class StageMetrics:
    """Inside a model stage replica: what each batch looked like and how long its compute took."""

    def __init__(self) -> None:
        self.batch_size = metrics.Histogram(
            "posestream_batch_size",
            description="Requests per batch run by a model stage.",
            boundaries=BATCH_SIZE_BUCKETS,
            tag_keys=("stage",),
        )
        self.compute_ms = metrics.Histogram(
            "posestream_stage_compute_ms",
            description="Compute time of one batch in a model stage (ms).",
            boundaries=LATENCY_MS_BUCKETS,
            tag_keys=("stage",),
        )
        self.items = metrics.Counter(
            "posestream_stage_items",
            description="Requests served by a model stage.",
            tag_keys=("stage", "model"),
        )

    def batch(self, stage: str, model: str, size: int, compute_ms: float) -> None:
        tags = {"stage": stage}
        self.batch_size.observe(size, tags=tags)
        self.compute_ms.observe(compute_ms, tags=tags)
        self.items.inc(size, tags={"stage": stage, "model": model})


class PipelineMetrics:
    """On the caller's side of the stages (the consumer): round trips and retries."""

    def __init__(self) -> None:
        self.call_ms = metrics.Histogram(
            "posestream_stage_latency_ms",
            description="Round trip of one frame through one stage, queueing and batching included (ms).",
            boundaries=LATENCY_MS_BUCKETS,
            tag_keys=("stage",),
        )
        self.retries = metrics.Counter(
            "posestream_stage_retries",
            description="Stage calls retried after a replica or version failure.",
            tag_keys=("stage", "error"),
        )
        self.failures = metrics.Counter(
            "posestream_stage_failures",
            description="Frames whose stage call failed after every retry (left pending).",
            tag_keys=("stage", "error"),
        )


class ConsumerMetrics:
    """Frame outcomes, published events, redeliveries, and the backlog of the shards a replica owns.

    The consumer reports cumulative counts (``stats()``); ``record`` adds what changed since the last call.
    """

    # key in the consumer's stats() -> (metric name, description)
    COUNTERS = {
        "frames_consumed": ("posestream_frames_consumed", "Frames read from the frames streams."),
        "frames_acked": ("posestream_frames_acked", "Frames finished (ok, stale or dead) and acknowledged."),
        "frames_ok": ("posestream_frames_ok", "Frames finished with an ok result."),
        "frames_stale": ("posestream_frames_stale", "Frames dropped by the stale-frame policy."),
        "events_published": ("posestream_events_published", "PersonEvents published."),
        "redeliveries": ("posestream_redeliveries", "Frames delivered more than once (claimed pending)."),
        "pipeline_errors": ("posestream_pipeline_errors", "Pipeline calls that failed (frames retried)."),
        "fenced": ("posestream_fenced", "Publishes refused: another consumer owns the shard now."),
        "redis_out_of_memory": (
            "posestream_redis_out_of_memory",
            "Writes Redis refused at maxmemory (noeviction); the consumer waits and retries.",
        ),
        "activity_changes": ("posestream_activity_changes", "ActivityChanges published (a label changed)."),
        "previews_written": ("posestream_previews_written", "Live-view previews written (best effort)."),
        "previews_failed": ("posestream_previews_failed", "Live-view previews that could not be written."),
    }

    def __init__(self) -> None:
        self.counters = {
            key: metrics.Counter(name, description=text) for key, (name, text) in self.COUNTERS.items()
        }
        self.dead = metrics.Counter(
            "posestream_frames_dead", description="Frames dead-lettered, by reason.", tag_keys=("reason",)
        )
        self.camera_frames = metrics.Counter(
            "posestream_camera_frames",
            description="Frames finished ok or stale, per camera (a silent camera stops moving it).",
            tag_keys=("camera_id",),
        )
        self.backlog = metrics.Gauge(
            "posestream_backlog", description="Entries in a shard's frames stream.", tag_keys=("shard",)
        )
        self.pending = metrics.Gauge(
            "posestream_pending", description="Delivered, unacknowledged frames.", tag_keys=("shard",)
        )
        self.shards_owned = metrics.Gauge("posestream_shards_owned", description="Shards this replica holds.")
        self.redis_full = metrics.Gauge(
            "posestream_redis_full", description="1 while Redis refuses this replica's writes for memory."
        )
        self.window = metrics.Gauge(
            "posestream_window",
            description="Frames a shard's owner keeps in flight (batch x replicas, 1 more batch on GPU).",
            tag_keys=("shard",),
        )
        self._seen: dict[str, float] = {}

    def record(self, counts: Mapping[str, float], dead_by_reason: Mapping[str, float]) -> None:
        """Add the increase of each cumulative count since the previous call (a restart starts over)."""
        for key, counter in self.counters.items():
            self._add(counter, key, counts.get(key, 0.0), None)
        for reason, total in dead_by_reason.items():
            self._add(self.dead, f"dead:{reason}", total, {"reason": reason})
        for camera_id, total in counts.get("frames_by_camera", {}).items():
            self._add(self.camera_frames, f"camera:{camera_id}", total, {"camera_id": camera_id})
        self.redis_full.set(float(bool(counts.get("redis_full", False))))

    def _add(self, counter: metrics.Counter, key: str, total: float, tags: dict[str, str] | None) -> None:
        delta = float(total) - self._seen.get(key, 0.0)
        if delta > 0:
            counter.inc(delta, tags=tags)
        self._seen[key] = float(total)

    def shards(self, backlog: Mapping[int, int], pending: Mapping[int, int]) -> None:
        for shard, value in backlog.items():
            self.backlog.set(value, tags={"shard": str(shard)})
        for shard, value in pending.items():
            self.pending.set(value, tags={"shard": str(shard)})
        self.shards_owned.set(len(backlog))

    def windows(self, frames: Mapping[int, int]) -> None:
        for shard, value in frames.items():
            self.window.set(value, tags={"shard": str(shard)})


EXPORTED.update({name: "counter" for name, _text in ConsumerMetrics.COUNTERS.values()})


@functools.cache
def stage_metrics() -> StageMetrics:
    return StageMetrics()


@functools.cache
def pipeline_metrics() -> PipelineMetrics:
    return PipelineMetrics()


@functools.cache
def consumer_metrics() -> ConsumerMetrics:
    return ConsumerMetrics()
