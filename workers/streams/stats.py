"""ConsumerStats: the counters a consumer keeps, read by metrics and by the autoscaling policy."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any


@dataclass
class ConsumerStats:
    frames_consumed: int = 0  # entries taken from the stream (first reads and claims)
    frames_ok: int = 0
    frames_stale: int = 0
    frames_dead: int = 0
    events_published: int = 0
    activity_changes: int = 0  # ActivityChange messages published (a track's smoothed activity changed)
    previews_written: int = 0  # live-view previews stored (best effort, rate-capped per camera)
    previews_failed: int = 0  # previews that could not be written (never a frame's failure)
    redeliveries: int = 0  # entries taken with a delivery count above 1
    fenced: int = 0  # publishes refused because another consumer owns the shard now
    already_done: int = 0  # frames found already finished at publish (a retried script)
    pipeline_errors: int = 0
    redis_errors: int = 0  # Redis failures that outlasted redis-py's own retries
    redis_out_of_memory: int = 0  # writes Redis refused at maxmemory (noeviction): waited out, not fatal
    redis_full: bool = False  # the last write was refused for memory and none has succeeded since
    leases_acquired: int = 0
    leases_lost: int = 0
    dead_by_reason: Counter[str] = field(default_factory=Counter)
    stale_by_rule: Counter[str] = field(default_factory=Counter)
    frames_by_camera: Counter[str] = field(default_factory=Counter)  # ok + stale, for per-camera rates

    def note_redis_full(self, full: bool) -> None:
        if full:
            self.redis_out_of_memory += 1
        self.redis_full = full

    @property
    def frames_acked(self) -> int:
        """Frames this consumer finished (ok + stale + dead): each acknowledged and deleted."""
        return self.frames_ok + self.frames_stale + self.frames_dead

    def as_dict(self) -> dict[str, Any]:
        return {
            "frames_consumed": self.frames_consumed,
            "frames_acked": self.frames_acked,
            "frames_ok": self.frames_ok,
            "frames_stale": self.frames_stale,
            "frames_dead": self.frames_dead,
            "events_published": self.events_published,
            "activity_changes": self.activity_changes,
            "previews_written": self.previews_written,
            "previews_failed": self.previews_failed,
            "redeliveries": self.redeliveries,
            "fenced": self.fenced,
            "already_done": self.already_done,
            "pipeline_errors": self.pipeline_errors,
            "redis_errors": self.redis_errors,
            "redis_out_of_memory": self.redis_out_of_memory,
            "redis_full": self.redis_full,
            "leases_acquired": self.leases_acquired,
            "leases_lost": self.leases_lost,
            "dead_by_reason": dict(self.dead_by_reason),
            "stale_by_rule": dict(self.stale_by_rule),
            "frames_by_camera": dict(self.frames_by_camera),
        }
