"""PreviewWriter: a best-effort, rate-capped, downscaled copy of each camera's recent frames for live views.

The worker deletes a frame once it is acknowledged, so a live view (``posestream view``) needs a copy of
its own. After a frame's fenced publish, the shard owner may SET ``…:preview:{camera_id}`` to a
``FramePreview`` (a JPEG whose longest side is at most ``preview_max_side``), at most ``preview_fps``
times a second per camera, with a TTL. Memory is bounded: one value per camera (about 20-40 KB at 480 px),
gone ``preview_ttl_s`` after the camera's last preview.

Best effort, never in the frame's way: ``offer`` only schedules a task (encoding runs in a thread), one
write per camera at a time, bounded by a timeout; a failed write (Redis away, ``maxmemory``) is counted
and forgotten. Previews are not fenced: a stalled former owner may overwrite one with an older frame,
which a view shows for a moment and nothing else reads.
"""

from __future__ import annotations

import asyncio
import time

import cv2
import numpy as np
import redis.asyncio as aioredis
import structlog

from schemas.settings import Settings
from schemas.streams import StreamKeys
from schemas.wire import FramePreview
from workers.streams.stats import ConsumerStats

log = structlog.get_logger()

JPEG_QUALITY = 70
WRITE_TIMEOUT_S = 1.0


def encode_preview(image: np.ndarray, max_side: int, quality: int = JPEG_QUALITY) -> bytes:
    """A BGR image as a JPEG whose longest side is at most ``max_side`` (never enlarged)."""
    height, width = image.shape[:2]
    scale = min(1.0, max_side / max(height, width))
    if scale < 1.0:
        size = (max(1, round(width * scale)), max(1, round(height * scale)))
        image = cv2.resize(image, size, interpolation=cv2.INTER_AREA)
    ok, encoded = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise ValueError(f"could not encode a {image.shape} preview")
    return encoded.tobytes()


class PreviewWriter:
    def __init__(self, client: aioredis.Redis, keys: StreamKeys, settings: Settings, stats: ConsumerStats):
        self.client = client
        self.stats = stats
        self.keys = keys
        self.interval_s = 1.0 / settings.preview_fps if settings.preview_fps > 0 else None
        self.max_side = settings.preview_max_side
        self.ttl_ms = settings.preview_ttl_s * 1000
        self._last: dict[str, float] = {}  # camera_id → monotonic time of its last preview taken
        self._tasks: dict[str, asyncio.Task[None]] = {}  # at most one write per camera

    @property
    def enabled(self) -> bool:
        return self.interval_s is not None

    def wants(self, camera_id: str) -> bool:
        """Whether a frame of this camera published now would be previewed (so its image is worth keeping)."""
        if self.interval_s is None or camera_id in self._tasks:
            return False
        return time.monotonic() - self._last.get(camera_id, -float("inf")) >= self.interval_s

    def offer(self, camera_id: str, frame_id: int, ts: float, image: np.ndarray) -> None:
        """Schedule the frame's preview if the camera is due one; returns at once."""
        if not self.wants(camera_id):
            return
        self._last[camera_id] = time.monotonic()
        task = asyncio.create_task(self._write(camera_id, frame_id, ts, image), name=f"preview-{camera_id}")
        self._tasks[camera_id] = task
        task.add_done_callback(lambda _done: self._tasks.pop(camera_id, None))

    async def _write(self, camera_id: str, frame_id: int, ts: float, image: np.ndarray) -> None:
        try:
            jpeg = await asyncio.to_thread(encode_preview, image, self.max_side)
            height, width = image.shape[:2]
            preview = FramePreview(
                camera_id=camera_id, frame_id=frame_id, ts=ts, image=jpeg, width=width, height=height
            )
            async with asyncio.timeout(WRITE_TIMEOUT_S):
                await self.client.set(self.keys.preview(camera_id), preview.to_bytes(), px=self.ttl_ms)
            self.stats.previews_written += 1
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - best effort by design: a preview never fails a frame
            self.stats.previews_failed += 1
            log.debug("preview_not_written", camera_id=camera_id, error=repr(exc))

    async def close(self) -> None:
        """Wait briefly for writes in flight (a stopping worker), then cancel what is left."""
        pending = list(self._tasks.values())
        if pending:
            _done, left = await asyncio.wait(pending, timeout=WRITE_TIMEOUT_S)
            for task in left:
                task.cancel()
