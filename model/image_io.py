"""Encoded image bytes → 8-bit BGR pixels: one rule for every path that reads images (the streaming
worker, ``posestream infer``), so that the same bytes give the same pixels and the same persons.

The rule: EXIF orientation is applied (as cameras and phones expect) and boxes and keypoints are in the
oriented image's pixels; gray, alpha and 16-bit images become 8-bit BGR. ``read_header`` reads a PNG's or
JPEG's size and orientation without decoding, so that a pixel limit is enforced before any decode.
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import cv2
import numpy as np

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
JPEG_SOI = b"\xff\xd8"
EXIF_HEADER = b"Exif\x00\x00"
ORIENTATION_TAG = 0x0112
# Orientations 5-8 turn the image a quarter: the displayed width is the stored height.
_TRANSPOSED = frozenset({5, 6, 7, 8})
# Start-of-frame markers carrying the image size (C4 = DHT, C8 = JPG, CC = DAC are not SOFs).
_JPEG_SOF = frozenset({0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF})
# Markers without a length field: TEM, RST0-7, SOI, EOI.
_JPEG_STANDALONE = frozenset({0x01, *range(0xD0, 0xD8), 0xD8, 0xD9})
_APP1 = 0xE1
# Real files have a few dozen segments before the frame header; a payload of millions of 2-byte markers
# or fill bytes must not hold the caller (the worker's event loop) for seconds.
_MAX_JPEG_STEPS = 4096
# Bounds on the EXIF work per image: entries of IFD0 read, eXIf chunks looked at in a PNG, their size.
_MAX_IFD_ENTRIES = 1024
_MAX_PNG_EXIF_CANDIDATES = 16
_MAX_PNG_EXIF_BYTES = 1 << 16


class ImageError(ValueError):
    """The bytes are not an image this module can read (header or pixels)."""


@dataclass(frozen=True)
class ImageHeader:
    """What a PNG or JPEG header says: the stored size and the EXIF orientation (1 when absent)."""

    format: Literal["png", "jpeg"]
    stored_width: int
    stored_height: int
    orientation: int = 1

    @property
    def width(self) -> int:
        """Width of the image as displayed (orientation applied): the decoded image's width."""
        return self.stored_height if self.orientation in _TRANSPOSED else self.stored_width

    @property
    def height(self) -> int:
        return self.stored_width if self.orientation in _TRANSPOSED else self.stored_height

    @property
    def pixels(self) -> int:
        return self.stored_width * self.stored_height


def read_header(data: bytes) -> ImageHeader:
    """Size and orientation from a PNG IHDR (+ eXIf) or a JPEG SOFn (+ APP1 Exif); ``ImageError`` when
    it cannot be read. Nothing is decoded."""
    if data.startswith(PNG_SIGNATURE):
        # signature(8) | length(4) | "IHDR"(4) | width(4) | height(4)
        if len(data) < 24 or data[12:16] != b"IHDR":
            raise ImageError("PNG without an IHDR chunk")
        width, height = struct.unpack(">II", data[16:24])
        return ImageHeader("png", width, height, _png_orientation(data))
    if data.startswith(JPEG_SOI):
        return _jpeg_header(data)
    raise ImageError("neither a PNG nor a JPEG file")


def _jpeg_header(data: bytes) -> ImageHeader:
    pos = 2
    orientation: int | None = None
    for _ in range(_MAX_JPEG_STEPS):
        if pos + 1 >= len(data):
            break
        if data[pos] != 0xFF:
            raise ImageError(f"JPEG marker expected at byte {pos}")
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
            raise ImageError("JPEG segment with a bad length")
        if marker in _JPEG_SOF:
            # length(2) | precision(1) | height(2) | width(2)
            if pos + 7 > len(data):
                break
            height, width = struct.unpack(">HH", data[pos + 3 : pos + 7])
            if height == 0:
                raise ImageError("JPEG height given by a DNL marker is not supported")
            return ImageHeader("jpeg", width, height, orientation or 1)
        if marker == 0xDA:  # start of scan before any SOF
            break
        if marker == _APP1 and orientation is None:
            segment = data[pos + 2 : pos + length]
            # As OpenCV: the first APP1 that is Exif counts (an XMP APP1 is skipped).
            if segment.startswith(EXIF_HEADER):
                orientation = exif_orientation(segment[len(EXIF_HEADER) :])
        pos += length
    else:
        raise ImageError(f"JPEG with over {_MAX_JPEG_STEPS} markers before its start-of-frame header")
    raise ImageError("JPEG without a start-of-frame header")


def _png_orientation(data: bytes) -> int:
    """The orientation of the first eXIf chunk with a good CRC, before or after the image data (OpenCV
    applies both). Found by searching, not by walking every chunk: a PNG may have millions of them."""
    start = 8
    for _ in range(_MAX_PNG_EXIF_CANDIDATES):
        at = data.find(b"eXIf", start)
        if at == -1:
            return 1
        start = at + 4
        if at < 12:  # inside the signature or IHDR's length: not a chunk type
            continue
        (length,) = struct.unpack(">I", data[at - 4 : at])
        end = at + 4 + length
        if length > _MAX_PNG_EXIF_BYTES or end + 4 > len(data):
            continue
        (crc,) = struct.unpack(">I", data[end : end + 4])
        if zlib.crc32(data[at:end]) != crc:  # libpng drops a chunk with a bad CRC
            continue
        return exif_orientation(data[at + 4 : end])
    return 1


def exif_orientation(tiff: bytes) -> int:
    """The Orientation tag (1-8) of an EXIF TIFF block's first IFD, 1 when absent or out of range. Read
    as OpenCV reads it: a 16-bit value at the entry's value field, whatever type the entry claims."""
    if len(tiff) < 8:
        return 1
    order = {b"II": "<", b"MM": ">"}.get(tiff[:2])
    if order is None:
        return 1
    (ifd,) = struct.unpack(order + "I", tiff[4:8])
    if ifd + 2 > len(tiff):
        return 1
    (count,) = struct.unpack(order + "H", tiff[ifd : ifd + 2])
    for index in range(min(count, _MAX_IFD_ENTRIES)):
        entry = ifd + 2 + 12 * index
        if entry + 12 > len(tiff):
            break
        (tag,) = struct.unpack(order + "H", tiff[entry : entry + 2])
        if tag == ORIENTATION_TAG:
            (value,) = struct.unpack(order + "H", tiff[entry + 8 : entry + 10])
            return value if 1 <= value <= 8 else 1
    return 1


def to_bgr8(image: np.ndarray) -> np.ndarray:
    """Any decoded image (gray, gray+alpha, BGR, BGRA; 8 or 16 bit) → (H, W, 3) uint8 BGR."""
    if image.dtype == np.uint16:
        image = (image >> 8).astype(np.uint8)
    elif image.dtype != np.uint8:
        raise ImageError(f"unsupported pixel type {image.dtype}")
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
    raise ImageError(f"unsupported channel count {channels}")


def decode_bgr8(data: bytes) -> np.ndarray:
    """Encoded image bytes → (H, W, 3) uint8 BGR with the EXIF orientation applied; ``ImageError``.

    ``IMREAD_COLOR`` is the rule: OpenCV applies the orientation (``IMREAD_UNCHANGED`` ignores it), turns
    gray, alpha and 16-bit images into 8-bit BGR and CMYK JPEGs into BGR. Any format OpenCV reads is
    decoded; a caller taking untrusted bytes checks ``read_header`` (format, pixel limit) first."""
    if not data:
        raise ImageError("no image bytes")
    decoded = cv2.imdecode(np.frombuffer(data, dtype=np.uint8), cv2.IMREAD_COLOR)
    if decoded is None or decoded.size == 0:
        raise ImageError("the image could not be decoded")
    return to_bgr8(decoded)


def read_image_file(path: str | Path) -> np.ndarray | None:
    """An image file decoded by ``decode_bgr8``; None when it is missing or not a readable image (as
    ``cv2.imread``, which this replaces so that files and stream frames follow one rule)."""
    try:
        return decode_bgr8(Path(path).read_bytes())
    except (OSError, ImageError):
        return None
