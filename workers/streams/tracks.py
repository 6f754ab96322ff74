"""CameraTracks: a shard owner's per-camera tracker states, stored in Redis by the fenced publish.

Where the state lives (DESIGN.md, "Tracks"): one key per camera, ``…:track:{camera_id}`` beside the
shard's streams (the same hash tag, so the fenced script may write it), holding ``TrackerState.to_bytes()``.
The script that publishes a frame's events also SETs the camera's new state, so the state moves exactly
when the frame is acknowledged, and only while this consumer holds the shard:

* a redelivered frame (its outputs never written) meets the state from before it and moves it once; a
  frame whose outputs were written is gone from the stream and is never applied again;
* a new owner (takeover, restart, Serve replica added or removed) reads the state from Redis: the cache
  here is dropped whenever the shard's work starts over;
* a stale frame counts as a missed frame for every track of its camera; a frame older than the last one
  the tracker applied cannot be tracked any more and is published as stale (``overtaken``).

The stream worker's frame ids are capture times (µs), not frame indices, so each frame the worker sees
(ok or stale) is one tracker step; frames a producer dropped before Redis are not counted.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import redis.asyncio as aioredis
import structlog

from model.predictions import PersonPrediction
from model.tracking import FrameOrderError, TrackedPerson, TrackerConfig, TrackerState, mark_missed, update
from schemas.settings import Settings
from schemas.streams import StreamKeys

log = structlog.get_logger()


def tracker_config(settings: Settings) -> TrackerConfig:
    return TrackerConfig(
        smoothing=settings.track_smoothing,
        vote_window=settings.track_vote_window,
        ema_alpha=settings.track_ema_alpha,
        max_missed_frames=settings.track_max_missed_frames,
    )


@dataclass(frozen=True)
class TrackStep:
    """The tracker's move for one frame: the camera's state after it and (ok frames) one answer per person."""

    camera_id: str
    state: TrackerState
    persons: tuple[TrackedPerson, ...] = ()


class CameraTracks:
    def __init__(self, client: aioredis.Redis, keys: StreamKeys, config: TrackerConfig):
        self.client = client
        self.keys = keys
        self.config = config
        self._states: dict[str, TrackerState] = {}  # what Redis holds for each camera, as far as we know

    def forget(self, camera_id: str | None = None) -> None:
        """Drop one camera's cached state (or all): it is read from Redis again before its next frame."""
        if camera_id is None:
            self._states.clear()
        else:
            self._states.pop(camera_id, None)

    async def load(self, cameras: Iterable[str]) -> None:
        """Read the stored state of each camera not cached yet (one round trip)."""
        missing = sorted(set(cameras) - set(self._states))
        if not missing:
            return
        async with self.client.pipeline(transaction=False) as pipe:
            for camera_id in missing:
                pipe.get(self.keys.track_state(camera_id))
            stored = await pipe.execute()
        for camera_id, raw in zip(missing, stored, strict=True):
            self._states[camera_id] = self._decode(camera_id, raw)

    def _decode(self, camera_id: str, raw: bytes | None) -> TrackerState:
        if raw is None:
            return TrackerState()
        try:
            return TrackerState.from_bytes(raw)
        except ValueError as exc:  # another version, or damaged: new track ids beat a stuck shard
            log.warning("tracker_state_unreadable", camera_id=camera_id, error=str(exc))
            return TrackerState()

    def state(self, camera_id: str) -> TrackerState:
        """The camera's committed state (``load`` it first; an unknown camera has no tracks yet)."""
        return self._states.get(camera_id, TrackerState())

    def batch(self) -> TrackBatch:
        return TrackBatch(self)

    def commit(self, step: TrackStep) -> None:
        """The fenced script stored ``step.state``: later frames of the camera start from it."""
        self._states[step.camera_id] = step.state


class TrackBatch:
    """Moves the states through one publish call's frames in order, without committing them: a frame the
    script did not write (Redis full, fenced) leaves the cached state where it was."""

    def __init__(self, tracks: CameraTracks):
        self._tracks = tracks
        self._moved: dict[str, TrackerState] = {}

    def _state(self, camera_id: str) -> TrackerState:
        if camera_id in self._moved:
            return self._moved[camera_id]
        return self._tracks.state(camera_id)

    def seen(self, camera_id: str, frame_id: int, persons: Sequence[PersonPrediction]) -> TrackStep:
        """An ok frame. Raises FrameOrderError when the tracker has moved past it."""
        state, tracked = update(self._state(camera_id), frame_id, persons, self._tracks.config, steps=1)
        self._moved[camera_id] = state
        return TrackStep(camera_id, state, tuple(tracked))

    def missed(self, camera_id: str, frame_id: int) -> TrackStep | None:
        """A stale frame: every track of the camera misses it (None: the tracker is past it already)."""
        try:
            state = mark_missed(self._state(camera_id), frame_id, self._tracks.config, steps=1)
        except FrameOrderError:
            return None
        self._moved[camera_id] = state
        return TrackStep(camera_id, state)
