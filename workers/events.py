"""Building the worker's wire messages (PersonEvent, FrameResult, DeadLetter) from model output.

``event_id`` is ``{camera_id}:{frame_id}:{person}`` and every field is a function of the frame and the
model's output, so a redelivered frame yields identical events (DESIGN.md, "Delivery semantics");
only ``latency_ms`` differs.
"""

from __future__ import annotations

from collections.abc import Sequence

from model.predictions import PersonPrediction
from model.track_state import TrackedPerson
from schemas.wire import ActivityChange, DeadLetter, Frame, FrameResult, PersonEvent


def person_events(
    frame: Frame,
    persons: Sequence[PersonPrediction],
    *,
    model_version: str,
    width: int,
    height: int,
    latency_ms: float,
    tracked: Sequence[TrackedPerson] | None = None,
) -> list[PersonEvent]:
    """One PersonEvent per person, in the model's order; ``tracked`` (same order) adds each one's track."""
    if tracked is not None and len(tracked) != len(persons):
        raise ValueError(f"{len(tracked)} tracked persons for {len(persons)} persons")
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
            track_id=tracked[index].track_id if tracked is not None else None,
            activity_smoothed=tracked[index].activity_smoothed if tracked is not None else None,
        )
        for index, person in enumerate(persons)
    ]


def activity_changes(frame: Frame, tracked: Sequence[TrackedPerson]) -> list[ActivityChange]:
    """One ActivityChange per track whose smoothed activity changed with this frame."""
    return [
        ActivityChange(
            camera_id=frame.camera_id,
            track_id=person.track_id,
            frame_id=frame.frame_id,
            ts=frame.ts,
            activity=person.activity_smoothed,
            previous=person.activity_changed_from,
            score=float(person.activity_scores_smoothed.get(person.activity_smoothed, 0.0)),
        )
        for person in tracked
        if person.activity_changed_from is not None
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
