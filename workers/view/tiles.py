"""Camera tiles: a camera's latest FramePreview with the persons of that frame drawn on it, and the
per-stage latency read from the worker's Prometheus endpoint."""

from __future__ import annotations

import re
import urllib.request
from collections import defaultdict

import cv2
import numpy as np
import redis
from pydantic import ValidationError

from model.draw import draw_predictions
from model.predictions import PersonPrediction
from schemas.settings import Settings
from schemas.streams import shard_for
from schemas.wire import FramePreview, PersonEvent, WireDecodeError

_LATENCY = re.compile(r"^(?:ray_)?posestream_stage_latency_ms_(sum|count)\{([^}]*)\}\s+([0-9.eE+-]+)$")
_STAGE = re.compile(r'stage="([^"]+)"')


def read_preview(client: redis.Redis, settings: Settings, camera_id: str) -> FramePreview | None:
    keys = settings.shard_keys(shard_for(camera_id, settings.shards))
    raw = client.get(keys.preview(camera_id))
    if raw is None:
        return None
    try:
        return FramePreview.from_bytes(raw)
    except (WireDecodeError, ValidationError):
        return None


def preview_cameras(client: redis.Redis, settings: Settings) -> list[str]:
    """Cameras that have a preview now (SCAN over each shard's preview keys)."""
    cameras = set()
    for keys in settings.all_shard_keys():
        prefix = keys.previews + ":"
        for key in client.scan_iter(match=prefix.replace("{", "\\{").replace("}", "\\}") + "*", count=200):
            cameras.add((key.decode() if isinstance(key, bytes) else key)[len(prefix) :])
    return sorted(cameras)


def draw_tile(preview: FramePreview, events: list[PersonEvent] | None) -> bytes:
    """The preview as a JPEG with the frame's persons (scaled from frame to preview pixels) drawn on it."""
    image = cv2.imdecode(np.frombuffer(preview.image, np.uint8), cv2.IMREAD_COLOR)
    if image is None:
        raise ValueError(f"preview of {preview.camera_id} is not an image")
    if events:
        sx = image.shape[1] / max(preview.width, 1)
        sy = image.shape[0] / max(preview.height, 1)
        persons = []
        for event in events:
            keypoints = np.asarray(event.keypoints, np.float32)
            keypoints[:, 0] *= sx
            keypoints[:, 1] *= sy
            x1, y1, x2, y2 = event.bbox
            persons.append(
                PersonPrediction(
                    (x1 * sx, y1 * sy, x2 * sx, y2 * sy), event.score, keypoints, event.activity,
                    dict(event.activity_scores),
                )
            )  # fmt: skip
        image = draw_predictions(
            image, persons, [e.track_id for e in events], [e.activity_smoothed for e in events]
        )
    ok, encoded = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, 80])
    if not ok:
        raise ValueError("could not encode the tile")
    return encoded.tobytes()


def stage_latency_ms(metrics_url: str, timeout_s: float = 1.0) -> dict[str, float]:
    """Mean round trip per stage (ms) since the worker started, from its Prometheus text (all nodes'
    series of a stage summed); empty when the endpoint cannot be read."""
    try:
        with urllib.request.urlopen(metrics_url, timeout=timeout_s) as response:  # noqa: S310 - operator's URL
            text = response.read().decode("utf-8", "replace")
    except OSError:
        return {}
    sums: dict[str, float] = defaultdict(float)
    counts: dict[str, float] = defaultdict(float)
    for line in text.splitlines():
        match = _LATENCY.match(line.strip())
        if match is None:
            continue
        stage = _STAGE.search(match.group(2))
        if stage is None:
            continue
        (sums if match.group(1) == "sum" else counts)[stage.group(1)] += float(match.group(3))
    return {stage: round(sums[stage] / counts[stage], 1) for stage in sorted(counts) if counts[stage] > 0}
