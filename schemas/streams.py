"""Shard choice and Redis key names (DESIGN.md, "Shards, ownership and the fence").

Pure functions: part of the public contract, since producers in other languages must put a
camera's frames on the same shard as posestream's own publisher.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass

DEFAULT_PREFIX = "posestream"
DEFAULT_GROUP = "posestream"


def shard_for(camera_id: str, shards: int) -> int:
    """The shard of a camera: ``crc32(camera_id as UTF-8) mod shards``."""
    if shards < 1:
        raise ValueError(f"shards must be >= 1, got {shards}")
    return zlib.crc32(camera_id.encode("utf-8")) % shards


@dataclass(frozen=True)
class StreamKeys:
    """Every Redis key of one shard. With one shard on a standalone Redis the keys are the plain names;
    otherwise (S > 1, or any S on a Redis Cluster) each shard's keys share the hash tag ``{k}``."""

    frames: str
    events: str
    results: str
    dead: str
    changes: str  # ActivityChange messages: a track's smoothed activity changed
    owner: str  # lease: holds the owning consumer's fencing token
    epoch: str  # INCR'd to mint fencing tokens
    strikes: str  # hash: frame entry id → times it was run alone without finishing (the poison bound)
    tracks: str  # prefix of the per-camera tracker state keys (``track_state``)
    previews: str  # prefix of the per-camera preview keys (``preview``)

    @classmethod
    def for_shard(
        cls, shard: int, shards: int, prefix: str = DEFAULT_PREFIX, *, cluster: bool = False
    ) -> StreamKeys:
        if not 0 <= shard < shards:
            raise ValueError(f"shard {shard} out of range for {shards} shards")
        # One hash tag per shard so that the fenced Lua script touches keys of one cluster slot. On a
        # cluster S = 1 is tagged too: the plain names would fall in different slots (CROSSSLOT).
        base = prefix if shards == 1 and not cluster else f"{prefix}:{{{shard}}}"
        return cls(
            frames=f"{base}:frames",
            events=f"{base}:events",
            results=f"{base}:results",
            dead=f"{base}:dead",
            changes=f"{base}:changes",
            owner=f"{base}:owner",
            epoch=f"{base}:epoch",
            strikes=f"{base}:strikes",
            tracks=f"{base}:track",
            previews=f"{base}:preview",
        )

    def track_state(self, camera_id: str) -> str:
        """The key of a camera's tracker state (the shard's hash tag, so the fenced script may write it)."""
        return f"{self.tracks}:{camera_id}"

    def preview(self, camera_id: str) -> str:
        """The key of a camera's latest FramePreview (live views read it; TTL'd, one value per camera)."""
        return f"{self.previews}:{camera_id}"


def all_shard_keys(shards: int, prefix: str = DEFAULT_PREFIX, *, cluster: bool = False) -> list[StreamKeys]:
    return [StreamKeys.for_shard(k, shards, prefix, cluster=cluster) for k in range(shards)]
