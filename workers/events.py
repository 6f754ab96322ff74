"""Building the worker's wire messages (PersonEvent, FrameResult, DeadLetter) from model output.

``event_id`` is ``{camera_id}:{frame_id}:{person}`` and every field is a function of the frame and the
model's output, so a redelivered frame yields identical events (DESIGN.md, "Delivery semantics");
only ``latency_ms`` differs.
"""

from __future__ import annotations

from collections.abc import Sequence

from model.predictions import PersonPrediction
from schemas.wire import DeadLetter, Frame, FrameResult, PersonEvent


def person_events(
    frame: Frame,
    persons: Sequence[PersonPrediction],
    *,
    model_version: str,
    width: int,
    height: int,
    latency_ms: float,
) -> list[PersonEvent]:
    """One PersonEvent per person, in the model's order."""
    return [
        PersonEvent(
            event_id=PersonEvent.make_id(frame.camera_id, frame.frame_id, index),
            camera_id=frame.camera_id,
            frame_id=frame.frame_id,
            ts=frame.ts,
            person=index,
            **person.to_plain(),  # bbox, score, keypoints, activity, activity_scores as plain Python
            model=model_version,
            width=width,
            height=height,
            latency_ms=max(0.0, float(latency_ms)),
        )
        for index, person in enumerate(persons)
    ]


def frame_result(
    frame: Frame,
    *,
    status: str,
    event_ids: Sequence[str],
    width: int,
    height: int,
    latency_ms: float,
) -> FrameResult:
    """The frame's one FrameResult; ``status`` "stale" carries no events."""
    return FrameResult(
        camera_id=frame.camera_id,
        frame_id=frame.frame_id,
        ts=frame.ts,
        status=status,
        persons=len(event_ids),
        event_ids=list(event_ids),
        width=width,
        height=height,
        latency_ms=max(0.0, float(latency_ms)),
        meta=frame.meta,
    )


def dead_letter(
    *,
    source_id: str,
    reason: str,
    error: str,
    payload: bytes,
    payload_limit: int,
    camera_id: str | None = None,
    frame_id: int | None = None,
) -> DeadLetter:
    """A DeadLetter keeping at most ``payload_limit`` raw bytes of the entry."""
    return DeadLetter(
        source_id=source_id,
        reason=reason,
        error=error[:2000],
        camera_id=camera_id,
        frame_id=frame_id,
        payload=bytes(payload[:payload_limit]),
    )
