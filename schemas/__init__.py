"""Wire messages, shard/key functions and settings. Imports neither torch, ray nor redis."""

from schemas.settings import Settings
from schemas.streams import StreamKeys, shard_for
from schemas.wire import (
    STREAM_FIELD,
    WIRE_VERSION,
    ActivityChange,
    DeadLetter,
    DeadReason,
    Frame,
    FramePreview,
    FrameResult,
    PersonEvent,
    WireDecodeError,
    WireMessage,
)

__all__ = [
    "STREAM_FIELD",
    "WIRE_VERSION",
    "ActivityChange",
    "DeadLetter",
    "DeadReason",
    "Frame",
    "FramePreview",
    "FrameResult",
    "PersonEvent",
    "Settings",
    "StreamKeys",
    "WireDecodeError",
    "WireMessage",
    "shard_for",
]
