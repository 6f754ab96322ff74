"""The tracker's values: its configuration, one track, the whole per-camera state and what it answers
per person. ``TrackerState`` serialises to plain JSON-compatible data (``to_plain``) and to msgpack bytes
(``to_bytes``), tagged with ``STATE_FORMAT`` and ``STATE_VERSION``; a state of another version is refused
(ValueError) rather than guessed at. The logic that moves a state lives in ``model.tracking``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import msgpack
import numpy as np
from pydantic import BaseModel, ConfigDict, Field, model_validator

from model.activity_smoothing import ActivitySmoother, SmoothedActivity
from model.predictions import NUM_KEYPOINTS

STATE_FORMAT = "posestream.tracker"
STATE_VERSION = 1
STATE_SIZE = 8  # cx, cy, w, h, vcx, vcy, vw, vh
MIN_SIDE = 1.0  # predicted boxes never shrink below a pixel


class FrameOrderError(ValueError):
    """A frame older than the last one applied: the tracker has moved past it."""


class TrackerConfig(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    iou_weight: float = Field(0.5, ge=0)
    oks_weight: float = Field(0.5, ge=0)
    min_similarity: float = Field(0.15, ge=0, lt=1)  # weighted IoU/OKS below this never match
    max_missed_frames: int = Field(15, ge=0)  # grace: frames a track survives unmatched
    keypoint_min_score: float = Field(0.1, ge=0)  # joints scored below this are left out of OKS
    # Kalman noise, standard deviations relative to the box height (DeepSORT's 1/20 and 1/160)
    position_noise: float = Field(1 / 20, ge=0)
    velocity_noise: float = Field(1 / 160, ge=0)  # 0: no motion model (boxes stay where last seen)
    measurement_noise: float = Field(1 / 20, gt=0)
    smoothing: Literal["vote", "ema"] = "vote"
    vote_window: int = Field(9, ge=1)
    ema_alpha: float = Field(0.15, gt=0, le=1)
    ema_margin: float = Field(0.1, ge=0, lt=1)  # lead over the current label's average to change it

    @model_validator(mode="after")
    def _some_weight(self) -> TrackerConfig:
        if self.iou_weight + self.oks_weight <= 0:
            raise ValueError("iou_weight + oks_weight must be positive")
        return self

    def smoother(self) -> ActivitySmoother:
        return ActivitySmoother(self.smoothing, self.vote_window, self.ema_alpha, self.ema_margin)


@dataclass(frozen=True)
class TrackedPerson:
    """The tracker's answer for one detection of a frame (same order as the persons given)."""

    track_id: int
    activity_smoothed: str
    activity_scores_smoothed: dict[str, float]
    activity_changed_from: str | None = None  # the previous smoothed label when it just changed
    new_track: bool = False

    def to_plain(self) -> dict[str, object]:
        return {
            "track_id": self.track_id,
            "activity_smoothed": self.activity_smoothed,
            "activity_scores_smoothed": dict(self.activity_scores_smoothed),
            "activity_changed_from": self.activity_changed_from,
            "new_track": self.new_track,
        }

    @classmethod
    def from_plain(cls, plain: dict) -> TrackedPerson:
        return cls(
            track_id=int(plain["track_id"]),
            activity_smoothed=str(plain["activity_smoothed"]),
            activity_scores_smoothed={str(k): float(v) for k, v in plain["activity_scores_smoothed"].items()},
            activity_changed_from=plain["activity_changed_from"],
            new_track=bool(plain["new_track"]),
        )


@dataclass(frozen=True)
class Track:
    """One person's track; arrays are float64 and never written to after construction."""

    track_id: int
    mean: np.ndarray  # (8,) Kalman state
    covariance: np.ndarray  # (8, 8)
    keypoints: np.ndarray  # (17, 3) of the last match
    matched_center: tuple[float, float]  # box centre of the last match (the keypoints' reference)
    hits: int
    missed: int
    activity: SmoothedActivity

    def box(self) -> np.ndarray:
        """The filter's box as x1, y1, x2, y2."""
        cx, cy, w, h = self.mean[:4]
        w, h = max(w, MIN_SIDE), max(h, MIN_SIDE)
        return np.array([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2])

    def to_plain(self) -> dict[str, object]:
        return {
            "track_id": self.track_id,
            "mean": self.mean.tolist(),
            "covariance": self.covariance.reshape(-1).tolist(),
            "keypoints": self.keypoints.reshape(-1).tolist(),
            "matched_center": list(self.matched_center),
            "hits": self.hits,
            "missed": self.missed,
            "activity": self.activity.to_plain(),
        }

    @classmethod
    def from_plain(cls, plain: dict) -> Track:
        return cls(
            track_id=int(plain["track_id"]),
            mean=np.asarray(plain["mean"], np.float64).reshape(STATE_SIZE),
            covariance=np.asarray(plain["covariance"], np.float64).reshape(STATE_SIZE, STATE_SIZE),
            keypoints=np.asarray(plain["keypoints"], np.float64).reshape(NUM_KEYPOINTS, 3),
            matched_center=(float(plain["matched_center"][0]), float(plain["matched_center"][1])),
            hits=int(plain["hits"]),
            missed=int(plain["missed"]),
            activity=SmoothedActivity.from_plain(plain["activity"]),
        )


@dataclass(frozen=True)
class TrackerState:
    """Everything the tracker of one camera remembers between frames."""

    tracks: tuple[Track, ...] = ()
    next_track_id: int = 1
    last_frame_id: int | None = None
    last_output: tuple[TrackedPerson, ...] = ()  # what ``last_frame_id`` was answered (redelivery)

    def to_plain(self) -> dict[str, object]:
        return {
            "format": STATE_FORMAT,
            "version": STATE_VERSION,
            "next_track_id": self.next_track_id,
            "last_frame_id": self.last_frame_id,
            "last_output": [person.to_plain() for person in self.last_output],
            "tracks": [track.to_plain() for track in self.tracks],
        }

    @classmethod
    def from_plain(cls, plain: dict) -> TrackerState:
        if not isinstance(plain, dict) or plain.get("format") != STATE_FORMAT:
            raise ValueError("not a posestream tracker state")
        if plain.get("version") != STATE_VERSION:
            raise ValueError(
                f"tracker state version {plain.get('version')!r}, this code reads {STATE_VERSION}"
            )
        last = plain["last_frame_id"]
        return cls(
            tracks=tuple(Track.from_plain(track) for track in plain["tracks"]),
            next_track_id=int(plain["next_track_id"]),
            last_frame_id=None if last is None else int(last),
            last_output=tuple(TrackedPerson.from_plain(person) for person in plain["last_output"]),
        )

    def to_bytes(self) -> bytes:
        return msgpack.packb(self.to_plain(), use_bin_type=True)

    @classmethod
    def from_bytes(cls, raw: bytes) -> TrackerState:
        try:
            plain = msgpack.unpackb(raw, raw=False)
        except (msgpack.UnpackException, ValueError) as exc:
            raise ValueError(f"tracker state is not valid msgpack: {exc}") from exc
        return cls.from_plain(plain)
