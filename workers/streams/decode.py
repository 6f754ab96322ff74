"""Validation and decoding of one frames-stream entry: bytes → Frame → 8-bit BGR image.

Checks run cheapest first and each failure maps to a dead-letter reason (``DeadReason``): the payload
size before unpacking, the msgpack map and the Frame schema, then the image's dimensions read from its
PNG/JPEG header (never decoded to find out), then the decode itself. Valid but unusual images
(grayscale, alpha, 16-bit) are converted to 8-bit BGR, not rejected.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

import cv2
import numpy as np
from pydantic import ValidationError

from schemas.wire import STREAM_FIELD, DeadReason, Frame, WireDecodeError, unpack_map

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
JPEG_SOI = b"\xff\xd8"
# Start-of-frame markers carrying the image size (C4 = DHT, C8 = JPG, CC = DAC are not SOFs).
_JPEG_SOF = frozenset({0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF})
# Markers without a length field: TEM, RST0-7, SOI, EOI.
_JPEG_STANDALONE = frozenset({0x01, *range(0xD0, 0xD8), 0xD8, 0xD9})


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
    """A frame that passed every check short of decoding its image (size read from the header)."""

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
    """(width, height) from a PNG IHDR or JPEG SOFn header; ``ValueError`` when it cannot be read."""
    if data.startswith(PNG_SIGNATURE):
        # signature(8) | length(4) | "IHDR"(4) | width(4) | height(4)
        if len(data) < 24 or data[12:16] != b"IHDR":
            raise ValueError("PNG without an IHDR chunk")
        width, height = struct.unpack(">II", data[16:24])
        return width, height
    if data.startswith(JPEG_SOI):
        return _jpeg_size(data)
    raise ValueError("neither a PNG nor a JPEG file")


def _jpeg_size(data: bytes) -> tuple[int, int]:
    pos = 2
    while pos + 1 < len(data):
        if data[pos] != 0xFF:
            raise ValueError(f"JPEG marker expected at byte {pos}")
        marker = data[pos + 1]
        if marker == 0xFF:  # fill byte before a marker
            pos += 1
            continue
        pos += 2
        if marker in _JPEG_STANDALONE:
            continue
        if pos + 2 > len(data):
            break
        (length,) = struct.unpack(">H", data[pos : pos + 2])
        if length < 2:
            raise ValueError("JPEG segment with a bad length")
        if marker in _JPEG_SOF:
            # length(2) | precision(1) | height(2) | width(2)
            if pos + 7 > len(data):
                break
            height, width = struct.unpack(">HH", data[pos + 3 : pos + 7])
            if height == 0:
                raise ValueError("JPEG height given by a DNL marker is not supported")
            return width, height
        if marker == 0xDA:  # start of scan before any SOF
            break
        pos += length
    raise ValueError("JPEG without a start-of-frame header")


def to_bgr8(image: np.ndarray) -> np.ndarray:
    """Any decoded image (gray, gray+alpha, BGR, BGRA; 8 or 16 bit) → (H, W, 3) uint8 BGR."""
    if image.dtype == np.uint16:
        image = (image >> 8).astype(np.uint8)
    elif image.dtype != np.uint8:
        raise ValueError(f"unsupported pixel type {image.dtype}")
    if image.ndim == 2:
        return cv2.cvtColor(image, cv2.COLOR_GRAY2BGR)
    channels = image.shape[2]
    if channels == 1:
        return cv2.cvtColor(image[:, :, 0], cv2.COLOR_GRAY2BGR)
    if channels == 2:  # gray + alpha: the alpha is dropped
        return cv2.cvtColor(np.ascontiguousarray(image[:, :, 0]), cv2.COLOR_GRAY2BGR)
    if channels == 3:
        return image
    if channels == 4:
        return cv2.cvtColor(image, cv2.COLOR_BGRA2BGR)
    raise ValueError(f"unsupported channel count {channels}")


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
        width, height = image_size(frame.image)
    except ValueError as exc:
        raise _reject(frame, payload, DeadReason.BAD_IMAGE, str(exc)) from exc
    if width * height > max_pixels:
        raise _reject(
            frame, payload, DeadReason.TOO_MANY_PIXELS, f"{width}x{height} image over {max_pixels} pixels"
        )
    if width == 0 or height == 0:
        raise _reject(frame, payload, DeadReason.BAD_IMAGE, f"empty {width}x{height} image")
    return ParsedFrame(entry_id=entry_id, frame=frame, width=width, height=height)


def decode_image(parsed: ParsedFrame, payload: bytes = b"") -> DecodedFrame:
    """Decode a parsed frame's image to 8-bit BGR, or ``FrameRejected`` (``bad_image``)."""
    frame = parsed.frame
    decoded = cv2.imdecode(np.frombuffer(frame.image, dtype=np.uint8), cv2.IMREAD_UNCHANGED)
    if decoded is None:
        raise _reject(frame, payload, DeadReason.BAD_IMAGE, "the image could not be decoded")
    try:
        image = to_bgr8(decoded)
    except ValueError as exc:
        raise _reject(frame, payload, DeadReason.BAD_IMAGE, str(exc)) from exc
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
