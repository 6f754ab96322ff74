"""A frame's outcome in a shard consumer's window, and what each outcome publishes.

Every entry the consumer takes ends as exactly one of ``Ok`` (the pipeline's persons), ``Stale`` (skipped
by a rule of ``workers.streams.stale``), ``Dead`` (a dead letter: rejected input or poison) or ``Gone``
(deleted by someone else while pending). ``encode_outcome`` turns a finished slot into the fenced
writer's ``Outputs``: the wire messages of DESIGN.md ("Wire format").
"""

from __future__ import annotations

from dataclasses import dataclass

from model.predictions import PersonPrediction
from workers.events import activity_changes, dead_letter, frame_result, person_events
from workers.streams.decode import ParsedFrame
from workers.streams.ordering import Slot
from workers.streams.stale import StaleRule
from workers.streams.tracks import TrackStep
from workers.streams.writer import Outputs


@dataclass
class Ok:
    persons: list[PersonPrediction]
    model_version: str


@dataclass
class Stale:
    rule: StaleRule


@dataclass
class Dead:
    reason: str
    error: str
    payload: bytes
    camera_id: str | None = None
    frame_id: int | None = None


class Gone:
    """The entry vanished while pending (deleted by someone else): nothing to publish."""


def encode_outcome(
    slot: Slot, now_ms: float, step: TrackStep | None, dead_payload_bytes: int
) -> Outputs | None:
    """What a finished slot publishes: a dead letter, a stale result, or an ok result with its events and
    activity changes (and the camera's tracker state); None for a vanished entry."""
    outcome, entry = slot.outcome, slot.extra["entry"]
    latency_ms = now_ms - entry.xadd_ms
    if isinstance(outcome, Dead):
        letter = dead_letter(
            source_id=entry.entry_id,
            reason=outcome.reason,
            error=outcome.error,
            payload=outcome.payload,
            payload_limit=dead_payload_bytes,
            camera_id=outcome.camera_id,
            frame_id=outcome.frame_id,
        )
        return Outputs(entry.entry_id, dead=letter.to_bytes())
    parsed: ParsedFrame = slot.extra["parsed"]
    if isinstance(outcome, Stale):
        result = frame_result(
            parsed.frame,
            status="stale",
            event_ids=[],
            width=parsed.width,
            height=parsed.height,
            latency_ms=latency_ms,
        )
        return Outputs(
            entry.entry_id,
            result=result.to_bytes(),
            camera_id=parsed.frame.camera_id,
            state=step.state.to_bytes() if step is not None else None,
        )
    if isinstance(outcome, Ok):
        width, height = slot.extra["size"]
        events = person_events(
            parsed.frame,
            outcome.persons,
            model_version=outcome.model_version,
            width=width,
            height=height,
            latency_ms=latency_ms,
            tracked=step.persons if step is not None else None,
        )
        changes = activity_changes(parsed.frame, step.persons) if step is not None else []
        result = frame_result(
            parsed.frame,
            status="ok",
            event_ids=[e.event_id for e in events],
            width=width,
            height=height,
            latency_ms=latency_ms,
        )
        return Outputs(
            entry.entry_id,
            events=[e.to_bytes() for e in events],
            result=result.to_bytes(),
            changes=[c.to_bytes() for c in changes],
            camera_id=parsed.frame.camera_id,
            state=step.state.to_bytes() if step is not None else None,
        )
    return None  # Gone
