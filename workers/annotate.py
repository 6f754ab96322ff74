"""``posestream annotate``: draw a camera's PersonEvents back onto the source its frames came from.

Events come from a JSON-lines file (``posestream events --json --results``) or from Redis (the events and
results streams read from the start, no consumer group, until exhausted). A frame's events are joined to
the source's frame by the FrameResult's ``meta.frame_index`` (``posestream publish`` sets it); a frame
without a result, or whose result has no ``frame_index``, falls back to ``frame_id`` as the index (what
``posestream infer VIDEO`` numbers its frames by).
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
import structlog
from pydantic import ValidationError

from schemas.wire import FrameResult, PersonEvent, WireDecodeError
from workers.paths import safe_child

log = structlog.get_logger()

REDIS_SCHEMES = ("redis://", "rediss://", "unix://")
DEFAULT_FPS = 25.0  # a folder of frames states no rate


@dataclass(frozen=True)
class FrameEvents:
    """What to draw on one source frame."""

    frame_id: int
    events: tuple[PersonEvent, ...]


@dataclass
class EventIndex:
    """One camera's events by source frame index."""

    camera_id: str
    frames: dict[int, FrameEvents] = field(default_factory=dict)
    collisions: int = 0  # frames that claimed an index already taken (a looped source): the first kept


def is_redis_url(spec: str) -> bool:
    return spec.startswith(REDIS_SCHEMES)


def read_json_lines(path: str | Path) -> list[PersonEvent | FrameResult]:
    """PersonEvents and FrameResults of a ``posestream events --json`` file; other kinds are skipped."""
    messages: list[PersonEvent | FrameResult] = []
    types = {"person_event": PersonEvent, "frame_result": FrameResult}
    with Path(path).open() as lines:
        for number, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
                kind = obj.pop("kind", None) if isinstance(obj, dict) else None
                if kind in types:
                    messages.append(types[kind].from_map(obj))
            except (json.JSONDecodeError, ValidationError, WireDecodeError) as exc:
                raise ValueError(f"{path}:{number}: not a posestream events JSON line: {exc}") from exc
    return messages


def read_redis(redis_url: str, camera_id: str | None) -> list[PersonEvent | FrameResult]:
    """Every retained event and result (XREAD from 0, no group: nothing is acknowledged or changed)."""
    from workers.client import EventSubscriber

    subscriber = EventSubscriber(
        redis_url, kinds=("events", "results"), start="0", camera_ids=[camera_id] if camera_id else None
    )
    try:
        return list(subscriber.messages(follow=False))
    finally:
        subscriber.close()


def index_events(messages: Iterable[PersonEvent | FrameResult], camera_id: str | None = None) -> EventIndex:
    """Group one camera's events by the source frame index (see the module docstring)."""
    messages = [m for m in messages if camera_id is None or m.camera_id == camera_id]
    cameras = sorted({m.camera_id for m in messages})
    if camera_id is None:
        if len(cameras) > 1:
            raise ValueError(f"events of several cameras ({', '.join(cameras)}): choose one with --camera-id")
        camera_id = cameras[0] if cameras else ""
    events: dict[int, dict[str, PersonEvent]] = {}
    results: dict[int, FrameResult] = {}
    for message in messages:
        if isinstance(message, PersonEvent):
            # a redelivered frame repeats its events with the same ids: keep one of each
            events.setdefault(message.frame_id, {})[message.event_id] = message
        else:
            results[message.frame_id] = message
    index = EventIndex(camera_id)
    for frame_id in sorted(events.keys() | results.keys()):
        result = results.get(frame_id)
        frame_index = (result.meta or {}).get("frame_index") if result is not None else None
        if not isinstance(frame_index, int) or frame_index < 0:
            frame_index = frame_id
        if frame_index in index.frames:
            index.collisions += 1
            continue
        found = sorted(events.get(frame_id, {}).values(), key=lambda e: e.person)
        index.frames[frame_index] = FrameEvents(frame_id, tuple(found))
    if index.collisions:
        log.warning("annotate_index_collisions", camera_id=camera_id, frames=index.collisions)
    return index


def draw_events(image: np.ndarray, events: Iterable[PersonEvent], blur: bool = False) -> np.ndarray:
    """The frame with its events drawn: boxes, skeletons, ``#track_id``, smoothed activity when present."""
    from model.draw import draw_predictions
    from model.predictions import PersonPrediction
    from model.privacy import blur_faces

    events = list(events)
    persons = [
        PersonPrediction(
            bbox=(e.bbox[0], e.bbox[1], e.bbox[2], e.bbox[3]), score=e.score,
            keypoints=np.asarray(e.keypoints, np.float32), activity=e.activity,
            activity_scores=dict(e.activity_scores),
        )
        for e in events
    ]  # fmt: skip
    shown = blur_faces(image, persons) if blur else image
    return draw_predictions(
        shown, persons, [e.track_id for e in events], [e.activity_smoothed for e in events]
    )


@dataclass(frozen=True)
class AnnotateSummary:
    video: Path
    png_dir: Path | None
    frames: int
    frames_with_events: int
    events: int


def annotate_source(
    source: str,
    index: EventIndex,
    out: Path,
    *,
    png: bool = True,
    blur: bool = False,
    fps: float | None = None,
) -> AnnotateSummary:
    """Draw ``index`` onto every frame of ``source`` (a video file or a folder of frames) and write
    OUT/<name>.webm (and OUT/<name>/NNNNNN.png, NNNNNN the frame index)."""
    from model.video import AnnotatedVideo
    from workers.client.sources import FrameSource, camera_id_for

    name = camera_id_for(source)
    frames = FrameSource(source, fps=0)  # every frame at once, with the numbering publish gave them
    if frames.kind not in ("video", "folder"):
        raise ValueError(f"{source}: annotate reads a video file or a folder of frames, not a {frames.kind}")
    rate = fps or (FrameSource(source).fps if frames.kind == "video" else None) or DEFAULT_FPS
    png_dir = safe_child(out, name) if png else None
    drawn_frames, drawn_events = 0, 0
    with AnnotatedVideo(safe_child(out, name, ".webm"), rate, png_dir) as video:
        for frame_index, frame, _ts in frames.indexed():
            image = frame if isinstance(frame, np.ndarray) else _decode(frame, source, frame_index)
            found = index.frames.get(frame_index)
            if found is not None and found.events:
                drawn_frames += 1
                drawn_events += len(found.events)
                image = draw_events(image, found.events, blur)
            video.write(image, frame_index)
    if video.frames == 0:
        raise ValueError(f"{source}: no frame could be read")
    if index.frames and not drawn_frames:
        log.warning("annotate_nothing_matched", camera_id=index.camera_id, source=source)
    return AnnotateSummary(video.path, png_dir, video.frames, drawn_frames, drawn_events)


def _decode(data: bytes, source: str, frame_index: int) -> np.ndarray:
    image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    if image is None:
        raise ValueError(f"{source}: frame {frame_index} does not decode as an image")
    return image
