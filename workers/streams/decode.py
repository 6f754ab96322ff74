"""Validation and decoding of one frames-stream entry: bytes → Frame → 8-bit BGR image.

Checks run cheapest first and each failure maps to a dead-letter reason (``DeadReason``): the payload
size before unpacking, the msgpack map and the Frame schema, then the image's dimensions read from its
PNG/JPEG header (never decoded to find out), then the decode itself. Valid but unusual images
(grayscale, alpha, 16-bit) are converted to 8-bit BGR, not rejected. Pixels follow the rule every reader
of images shares (``model.image_io``): EXIF orientation applied, sizes those of the oriented image.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from pydantic import ValidationError

from model.image_io import JPEG_SOI, PNG_SIGNATURE, ImageError, decode_bgr8, read_header, to_bgr8
from schemas.wire import STREAM_FIELD, DeadReason, Frame, WireDecodeError, unpack_map

__all__ = [
    "JPEG_SOI",
    "PNG_SIGNATURE",
    "DecodedFrame",
    "FrameRejected",
    "ParsedFrame",
    "decode_entry",
    "decode_image",
    "entry_identity",
    "image_size",
    "parse_entry",
    "to_bgr8",
]


class FrameRejected(Exception):
    """A frame that cannot be processed; becomes a DeadLetter with ``reason``."""

    def __init__(
        self,
        reason: DeadReason,
        error: str,
        payload: bytes = b"",
        camera_id: str | None = None,
        frame_id: int | None = None,
    ):
        super().__init__(f"{reason.value}: {error}")
        self.reason = reason
        self.error = error
        self.payload = payload
        self.camera_id = camera_id
        self.frame_id = frame_id


@dataclass(frozen=True)
class ParsedFrame:
    """A frame that passed every check short of decoding its image (size read from the header, EXIF
    orientation applied: the size a stale frame's result reports)."""

    entry_id: str
    frame: Frame
    width: int
    height: int


@dataclass(frozen=True)
class DecodedFrame:
    entry_id: str
    frame: Frame
    image: np.ndarray  # (H, W, 3) uint8 BGR

    @property
    def width(self) -> int:
        return int(self.image.shape[1])

    @property
    def height(self) -> int:
        return int(self.image.shape[0])


def image_size(data: bytes) -> tuple[int, int]:
    """(width, height) of the oriented image from a PNG or JPEG header; ``ValueError`` when unreadable."""
    header = read_header(data)
    return header.width, header.height


def parse_entry(
    entry_id: str, fields: dict[bytes, bytes], *, max_payload_bytes: int, max_pixels: int
) -> ParsedFrame:
    """Every check that needs no image decode, or ``FrameRejected`` with the reason."""
    payload = fields.get(STREAM_FIELD.encode())
    if payload is None:
        any_payload = next(iter(fields.values()), b"")
        raise FrameRejected(DeadReason.SCHEMA, f"entry has no {STREAM_FIELD!r} field", any_payload)
    if len(payload) > max_payload_bytes:
        raise FrameRejected(
            DeadReason.TOO_LARGE, f"payload of {len(payload)} bytes over {max_payload_bytes}", payload
        )
    try:
        message = unpack_map(payload)
    except WireDecodeError as exc:
        raise FrameRejected(DeadReason.NOT_MSGPACK, str(exc), payload) from exc
    camera_id, frame_id = _identity(message)
    try:
        frame = Frame.from_map(message)
    except ValidationError as exc:
        error = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
        raise FrameRejected(DeadReason.SCHEMA, error, payload, camera_id, frame_id) from exc
    try:
        header = read_header(frame.image)
    except ImageError as exc:
        raise _reject(frame, payload, DeadReason.BAD_IMAGE, str(exc)) from exc
    width, height = header.width, header.height
    if header.pixels > max_pixels:
        raise _reject(
            frame, payload, DeadReason.TOO_MANY_PIXELS, f"{width}x{height} image over {max_pixels} pixels"
        )
    if width == 0 or height == 0:
        raise _reject(frame, payload, DeadReason.BAD_IMAGE, f"empty {width}x{height} image")
    return ParsedFrame(entry_id=entry_id, frame=frame, width=width, height=height)


def decode_image(parsed: ParsedFrame, payload: bytes = b"") -> DecodedFrame:
    """Decode a parsed frame's image to 8-bit BGR, or ``FrameRejected`` (``bad_image``)."""
    frame = parsed.frame
    try:
        image = decode_bgr8(frame.image)
    except ImageError as exc:
        raise _reject(frame, payload, DeadReason.BAD_IMAGE, str(exc)) from exc
    height, width = image.shape[:2]
    # The decoder must see the image the header promised (the pixel limit was checked on the header); the
    # orientation may differ only by a quarter turn, were OpenCV to read an EXIF block read_header skipped.
    if (width, height) not in ((parsed.width, parsed.height), (parsed.height, parsed.width)):
        raise _reject(
            frame,
            payload,
            DeadReason.BAD_IMAGE,
            f"decoded a {width}x{height} image from a {parsed.width}x{parsed.height} header",
        )
    return DecodedFrame(entry_id=parsed.entry_id, frame=frame, image=image)


def decode_entry(
    entry_id: str, fields: dict[bytes, bytes], *, max_payload_bytes: int, max_pixels: int
) -> DecodedFrame:
    """parse_entry then decode_image."""
    parsed = parse_entry(entry_id, fields, max_payload_bytes=max_payload_bytes, max_pixels=max_pixels)
    return decode_image(parsed, fields.get(STREAM_FIELD.encode(), b""))


def _reject(frame: Frame, payload: bytes, reason: DeadReason, error: str) -> FrameRejected:
    return FrameRejected(reason, error, payload, frame.camera_id, frame.frame_id)


def _identity(message: dict) -> tuple[str | None, int | None]:
    """camera_id and frame_id when they can be read, for dead letters of frames that fail the schema."""
    camera_id = message.get("camera_id")
    frame_id = message.get("frame_id")
    return (
        camera_id if isinstance(camera_id, str) and len(camera_id) <= 128 else None,
        frame_id if isinstance(frame_id, int) and not isinstance(frame_id, bool) and frame_id >= 0 else None,
    )


def entry_identity(fields: dict[bytes, bytes]) -> tuple[str | None, int | None]:
    """camera_id and frame_id of a raw entry when they can be read (never raises): for poison letters."""
    try:
        return _identity(unpack_map(fields.get(STREAM_FIELD.encode(), b"")))
    except WireDecodeError:
        return None, None
