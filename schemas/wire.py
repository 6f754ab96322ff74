"""Wire messages: the public contract of posestream's Redis streams (DESIGN.md, "Wire format").

Every stream entry has one field, ``msg``, holding a msgpack map with string keys. Models are
strict (no silent coercion of "5" to 5: other languages must send the right types), frozen, and
ignore unknown keys so that later optional additions do not break v1 readers.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Any, ClassVar, Literal, Self

import msgpack
from annotated_types import Len
from pydantic import BaseModel, ConfigDict, Field, StringConstraints, ValidationError

WIRE_VERSION = 1
STREAM_FIELD = "msg"
NUM_KEYPOINTS = 17

CameraId = Annotated[str, StringConstraints(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9._:-]+$")]
FrameId = Annotated[int, Field(ge=0)]
Meta = dict[str, str | int | float]
BBox = Annotated[list[float], Len(4, 4)]
Keypoint = Annotated[list[float], Len(3, 3)]  # x, y, score in pixels of the original frame
Keypoints = Annotated[list[Keypoint], Len(NUM_KEYPOINTS, NUM_KEYPOINTS)]
PixelSize = Annotated[int, Field(ge=0, le=1_000_000)]  # 0 when the frame was never decoded
NonNegative = Annotated[float, Field(ge=0)]
TrackId = Annotated[int, Field(ge=1)]
UnixSeconds = Annotated[float, Field(allow_inf_nan=False)]  # NaN or inf would poison ages and orderings
# Far above any real message (meta, event ids, keypoints), far below what makes unpacking cost seconds
MAX_CONTAINER_LEN = 4096


class WireDecodeError(ValueError):
    """The bytes are not a msgpack map with string keys (dead-letter reason ``not_msgpack``)."""


class DeadReason(StrEnum):
    """Machine-readable dead-letter reasons; clients switch on these strings."""

    NOT_MSGPACK = "not_msgpack"
    SCHEMA = "schema"
    BAD_IMAGE = "bad_image"
    TOO_LARGE = "too_large"
    TOO_MANY_PIXELS = "too_many_pixels"
    POISON = "poison"


class WireMessage(BaseModel):
    """Base for every stream message: msgpack encoding and the shared model config."""

    model_config = ConfigDict(
        frozen=True, strict=True, extra="ignore", json_schema_extra=lambda s: s["required"].insert(0, "v")
    )
    kind: ClassVar[str]
    # Optional keys added to v1 after its first release: left out of the encoding while unset, so a message
    # that does not use them encodes to the same bytes as before (the golden files of the first release).
    added_in_v1: ClassVar[frozenset[str]] = frozenset()

    v: Literal[1] = WIRE_VERSION

    def to_dict(self) -> dict[str, Any]:
        data = self.model_dump(mode="python")
        for key in self.added_in_v1:
            if data.get(key) is None:
                data.pop(key, None)
        return data

    def to_bytes(self) -> bytes:
        # Field order is declaration order, so the encoding is stable (see the golden files).
        return msgpack.packb(self.to_dict(), use_bin_type=True)

    @classmethod
    def from_bytes(cls, data: bytes) -> Self:
        return cls.from_map(unpack_map(data))

    @classmethod
    def from_map(cls, obj: dict[str, Any]) -> Self:
        """Validate a decoded wire map: the strict path every reader of the wire takes."""
        # ``v`` has a default for Python callers, but on the wire it is required.
        if "v" not in obj:
            raise ValidationError.from_exception_data(
                cls.__name__, [{"type": "missing", "loc": ("v",), "input": obj}]
            )
        # Literal[1] admits True and 1.0 (both == 1) even in strict mode; the wire's version is an integer.
        if type(obj["v"]) is not int:
            raise ValidationError.from_exception_data(
                cls.__name__,
                [{"type": "literal_error", "loc": ("v",), "input": obj["v"], "ctx": {"expected": "1"}}],
            )
        return cls.model_validate(obj)


def unpack_map(data: bytes) -> dict[str, Any]:
    """Decode msgpack bytes into a map with string keys, or raise ``WireDecodeError``."""
    try:
        obj = msgpack.unpackb(
            data,
            raw=False,
            strict_map_key=True,
            max_map_len=MAX_CONTAINER_LEN,
            max_array_len=MAX_CONTAINER_LEN,
        )
    except Exception as exc:  # msgpack raises several unrelated types for garbage
        raise WireDecodeError(f"not msgpack: {exc}") from exc
    if not isinstance(obj, dict):
        raise WireDecodeError(f"msgpack value is a {type(obj).__name__}, expected a map")
    return obj


class Frame(WireMessage):
    """Producer → frames stream: one camera image."""

    kind: ClassVar[str] = "frame"
    added_in_v1: ClassVar[frozenset[str]] = frozenset({"max_age_s"})
    camera_id: CameraId
    frame_id: FrameId
    ts: UnixSeconds
    image: Annotated[bytes, Field(min_length=1)]  # a JPEG or PNG file's bytes
    meta: Meta | None = None
    # Older than this when the worker reads it (Redis clock, from its XADD) → a ``stale`` result, unrun:
    # a live camera's frame is worthless once the picture has moved on.
    max_age_s: Annotated[float, Field(gt=0)] | None = Field(
        None,
        description="Seconds: older than this when the worker reads it (Redis clock, from its XADD), the "
        "frame gets a stale result (rule max_age) instead of running. `posestream publish` sets it for live "
        "sources (webcams, capture URLs; default 2, POSESTREAM_LIVE_MAX_AGE_S / --max-age), never for files "
        "or folders.",
    )


class PersonEvent(WireMessage):
    """Worker → events stream: one person found in one frame."""

    kind: ClassVar[str] = "person_event"
    added_in_v1: ClassVar[frozenset[str]] = frozenset({"track_id", "activity_smoothed"})
    event_id: str
    camera_id: CameraId
    frame_id: FrameId
    ts: UnixSeconds
    person: Annotated[int, Field(ge=0)]
    bbox: BBox
    score: float
    keypoints: Keypoints
    activity: str
    activity_scores: dict[str, float]
    model: str
    width: PixelSize
    height: PixelSize
    latency_ms: NonNegative
    track_id: TrackId | None = None  # the person's track on this camera (absent when tracking is off)
    activity_smoothed: str | None = None  # the track's activity over recent frames

    @staticmethod
    def make_id(camera_id: str, frame_id: int, person: int) -> str:
        return f"{camera_id}:{frame_id}:{person}"


class FrameResult(WireMessage):
    """Worker → results stream: one per frame, also for zero persons and for stale frames."""

    kind: ClassVar[str] = "frame_result"
    camera_id: CameraId
    frame_id: FrameId
    ts: UnixSeconds
    status: Literal["ok", "stale"]
    persons: Annotated[int, Field(ge=0)]
    event_ids: list[str]
    width: PixelSize
    height: PixelSize
    latency_ms: NonNegative
    meta: Meta | None = None


class DeadLetter(WireMessage):
    """Worker → dead stream: a frame that could not be processed, with the reason."""

    kind: ClassVar[str] = "dead_letter"
    source_id: str  # the frame's stream entry id
    reason: str  # a DeadReason value; a str so that readers of v1 accept codes added later
    error: str
    camera_id: str | None = None
    frame_id: int | None = None
    payload: bytes  # the raw entry bytes, cut at the configured bound


class ActivityChange(WireMessage):
    """Worker → changes stream: a track's smoothed activity changed (one message per change, same frame
    as the PersonEvent that carries the new ``activity_smoothed``)."""

    kind: ClassVar[str] = "activity_change"
    camera_id: CameraId
    track_id: TrackId
    frame_id: FrameId
    ts: UnixSeconds
    activity: str  # the new smoothed label
    previous: str  # the smoothed label before this frame
    score: float  # the new label's smoothed score


class FramePreview(WireMessage):
    """Worker → a camera's preview key (not a stream): a recent frame, downscaled, for live views. Best
    effort and rate-capped; the persons are the PersonEvents of the same ``(camera_id, frame_id)``."""

    kind: ClassVar[str] = "frame_preview"
    camera_id: CameraId
    frame_id: FrameId
    ts: UnixSeconds
    image: Annotated[bytes, Field(min_length=1)]  # JPEG, longest side at most the worker's preview size
    width: PixelSize  # the original frame's size: multiply event pixels by image size / this to draw them
    height: PixelSize


WIRE_MESSAGES: tuple[type[WireMessage], ...] = (
    Frame,
    PersonEvent,
    FrameResult,
    DeadLetter,
    ActivityChange,
    FramePreview,
)
