"""FramePublisher: encode frames and XADD them to their camera's shard, with backpressure.

The frames stream is never trimmed (trimming would drop undelivered frames); the worker deletes what it
has acknowledged, so the stream's length is its backlog. Before each XADD the publisher reads that
length and, past ``max_backlog``, either waits for the worker to drain it (policy ``wait``) or drops the
frame and counts it (policy ``drop``).
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from dataclasses import dataclass
from typing import Literal

import cv2
import numpy as np
import redis
import structlog

from schemas.settings import Settings
from schemas.streams import shard_for
from schemas.wire import STREAM_FIELD, Frame, Meta
from workers.client.connection import connect, resolve_redis_url

log = structlog.get_logger()

Policy = Literal["wait", "drop"]
POLICIES: tuple[str, ...] = ("wait", "drop")


class FrameTooLarge(ValueError):
    """The encoded frame is over ``max_payload_bytes``: the worker would dead-letter it (``too_large``)."""


class BackpressureTimeout(TimeoutError):
    """Policy ``wait``: the backlog stayed over the bound for longer than the timeout."""


@dataclass(frozen=True)
class PublishOutcome:
    status: Literal["published", "dropped"]
    camera_id: str
    frame_id: int
    shard: int
    backlog: int  # the shard's frames backlog seen just before the XADD (or the drop)
    entry_id: str | None = None  # the stream entry id when published

    @property
    def published(self) -> bool:
        return self.status == "published"


def encode_image(image: bytes | np.ndarray, jpeg_quality: int = 90) -> bytes:
    """Bytes of a JPEG/PNG file as they are; a BGR (or gray) uint8 array → JPEG."""
    if isinstance(image, bytes | bytearray | memoryview):
        return bytes(image)
    if not isinstance(image, np.ndarray) or image.dtype != np.uint8 or image.ndim not in (2, 3):
        raise ValueError("image must be JPEG/PNG bytes or an HxW or HxWxC uint8 array")
    ok, buf = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, jpeg_quality])
    if not ok:
        raise ValueError(f"cv2.imencode failed for an array of shape {image.shape}")
    return buf.tobytes()


class FramePublisher:
    """Publishes Frames for any number of cameras; thread-safe (one instance may serve many threads)."""

    def __init__(
        self,
        redis_url: str | None = None,
        *,
        client: redis.Redis | None = None,
        settings: Settings | None = None,
        policy: Policy = "wait",
        max_backlog: int = 256,
        wait_timeout_s: float = 60.0,
        poll_interval_s: float = 0.02,
        jpeg_quality: int = 90,
        retries: int = 8,
    ) -> None:
        if policy not in POLICIES:
            raise ValueError(f"policy must be one of {POLICIES}, got {policy!r}")
        if max_backlog < 1:
            raise ValueError(f"max_backlog must be >= 1, got {max_backlog}")
        self.settings = settings or Settings()
        self.redis = client or connect(
            resolve_redis_url(redis_url, self.settings),
            retries=retries,
            cluster=self.settings.redis_cluster,
            settings=self.settings,
        )
        self.policy: Policy = policy
        self.max_backlog = max_backlog
        self.wait_timeout_s = wait_timeout_s
        self.poll_interval_s = poll_interval_s
        self.jpeg_quality = jpeg_quality
        self.counts: Counter[str] = Counter()  # published, dropped, waits
        self.last_backlog: dict[int, int] = {}
        self._last_frame_id: dict[str, int] = {}
        self._lock = threading.Lock()

    def shard_of(self, camera_id: str) -> int:
        return shard_for(camera_id, self.settings.shards)

    def frames_key(self, camera_id: str) -> str:
        return self.settings.shard_keys(self.shard_of(camera_id)).frames

    def backlog(self, camera_id: str) -> int:
        """Entries in the camera's frames stream: not yet acknowledged by the worker."""
        return int(self.redis.xlen(self.frames_key(camera_id)))

    def total_backlog(self) -> int:
        return sum(int(self.redis.xlen(keys.frames)) for keys in self.settings.all_shard_keys())

    def next_frame_id(self, camera_id: str, ts: float) -> int:
        """Capture time in µs, bumped past the camera's last id so ids strictly increase in-process."""
        frame_id = int(ts * 1_000_000)
        with self._lock:
            last = self._last_frame_id.get(camera_id)
            if last is not None and frame_id <= last:
                frame_id = last + 1
            self._last_frame_id[camera_id] = frame_id
        return frame_id

    def publish(
        self,
        image: bytes | np.ndarray,
        camera_id: str,
        frame_id: int | None = None,
        ts: float | None = None,
        meta: Meta | None = None,
        max_age_s: float | None = None,
    ) -> PublishOutcome:
        """Encode and XADD one frame; raises ``BackpressureTimeout`` (policy wait), ``FrameTooLarge`` (over
        the payload limit: refused before XADD) or pydantic's ``ValidationError`` for a bad camera id /
        frame id / meta. ``max_age_s`` (a live source's frames): older than that when the worker reads
        it, the frame gets a ``stale`` result instead of running."""
        ts = time.time() if ts is None else float(ts)
        if frame_id is None:
            frame_id = self.next_frame_id(camera_id, ts)
        else:
            with self._lock:
                self._last_frame_id[camera_id] = max(frame_id, self._last_frame_id.get(camera_id, -1))
        # Validate before waiting so that bad input fails at once.
        frame = Frame(
            camera_id=camera_id,
            frame_id=frame_id,
            ts=ts,
            image=encode_image(image, self.jpeg_quality),
            meta=meta,
            max_age_s=max_age_s,
        )
        payload = frame.to_bytes()
        if len(payload) > self.settings.max_payload_bytes:
            raise FrameTooLarge(
                f"frame {camera_id}:{frame_id} encodes to {len(payload)} bytes, over max_payload_bytes="
                f"{self.settings.max_payload_bytes} (lower the resolution or the JPEG quality)"
            )
        shard = self.shard_of(camera_id)
        key = self.settings.shard_keys(shard).frames
        backlog = self._admit(key)
        self.last_backlog[shard] = backlog
        if backlog >= self.max_backlog:  # only reachable with policy "drop"
            with self._lock:
                self.counts["dropped"] += 1
            log.debug("frame_dropped", camera_id=camera_id, frame_id=frame_id, backlog=backlog)
            return PublishOutcome("dropped", camera_id, frame_id, shard, backlog)
        entry_id = self.redis.xadd(key, {STREAM_FIELD: payload})
        with self._lock:
            self.counts["published"] += 1
        entry = entry_id.decode() if isinstance(entry_id, bytes) else str(entry_id)
        return PublishOutcome("published", camera_id, frame_id, shard, backlog, entry)

    def _admit(self, key: str) -> int:
        """The backlog once the frame may go (policy wait), or as it is now (policy drop)."""
        backlog = int(self.redis.xlen(key))
        if backlog < self.max_backlog or self.policy == "drop":
            return backlog
        with self._lock:
            self.counts["waits"] += 1
        deadline = time.monotonic() + self.wait_timeout_s
        while backlog >= self.max_backlog:
            if time.monotonic() >= deadline:
                raise BackpressureTimeout(
                    f"{key} held {backlog} >= {self.max_backlog} frames for {self.wait_timeout_s:.1f}s"
                )
            time.sleep(self.poll_interval_s)
            backlog = int(self.redis.xlen(key))
        return backlog

    def close(self) -> None:
        self.redis.close()

    def __enter__(self) -> FramePublisher:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
