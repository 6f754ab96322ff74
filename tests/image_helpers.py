"""Hand-built image files for the decode tests: PNGs chunk by chunk (bombs, odd headers, eXIf), JPEGs with
an EXIF APP1 segment written byte by byte, and the EXIF orientations as numpy operations."""

from __future__ import annotations

import struct
import zlib
from functools import lru_cache

import cv2
import numpy as np

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def png_file(width: int, height: int, rows: bytes, bit_depth: int = 8, colour_type: int = 0) -> bytes:
    """A PNG of the given IHDR around ``rows`` (raw scanlines, each led by its filter byte), compressed."""
    ihdr = struct.pack(">IIBBBBB", width, height, bit_depth, colour_type, 0, 0, 0)
    return (
        PNG_SIGNATURE
        + png_chunk(b"IHDR", ihdr)
        + png_chunk(b"IDAT", zlib.compress(rows, 9))
        + png_chunk(b"IEND", b"")
    )


@lru_cache(maxsize=4)
def png_bomb(side: int) -> bytes:
    """A valid gray PNG of side × side black pixels: a few kB that decode to side² bytes."""
    row = b"\x00" * (side + 1)
    compressor = zlib.compressobj(9)
    body = b"".join(compressor.compress(row) for _ in range(side)) + compressor.flush()
    ihdr = struct.pack(">IIBBBBB", side, side, 8, 0, 0, 0, 0)
    return PNG_SIGNATURE + png_chunk(b"IHDR", ihdr) + png_chunk(b"IDAT", body) + png_chunk(b"IEND", b"")


@lru_cache(maxsize=4)
def jpeg_bomb(side: int) -> bytes:
    """A valid JPEG of side × side black pixels (a black JPEG compresses to almost nothing)."""
    ok, data = cv2.imencode(".jpg", np.zeros((side, side), np.uint8), [cv2.IMWRITE_JPEG_QUALITY, 10])
    assert ok
    return data.tobytes()


def exif_tiff(orientation: int, big_endian: bool = False) -> bytes:
    """An EXIF TIFF block whose IFD0 holds one entry: Orientation (0x0112), SHORT, 1 value."""
    order = ">" if big_endian else "<"
    return (
        (b"MM" if big_endian else b"II")
        + struct.pack(order + "HI", 42, 8)  # magic, offset of IFD0
        + struct.pack(order + "H", 1)  # one entry
        + struct.pack(order + "HHI", 0x0112, 3, 1)
        + struct.pack(order + "H", orientation)
        + b"\x00\x00"  # the rest of the 4-byte value field
        + struct.pack(order + "I", 0)  # no next IFD
    )


def jpeg_with_orientation(jpeg: bytes, orientation: int, big_endian: bool = False) -> bytes:
    """The JPEG with an APP1 "Exif" segment right after SOI carrying the orientation."""
    payload = b"Exif\x00\x00" + exif_tiff(orientation, big_endian)
    app1 = b"\xff\xe1" + struct.pack(">H", len(payload) + 2) + payload
    return jpeg[:2] + app1 + jpeg[2:]


def png_with_orientation(png: bytes, orientation: int, big_endian: bool = False) -> bytes:
    """The PNG with an eXIf chunk right after IHDR carrying the orientation."""
    end_of_ihdr = 8 + 12 + 13
    return png[:end_of_ihdr] + png_chunk(b"eXIf", exif_tiff(orientation, big_endian)) + png[end_of_ihdr:]


def oriented(image: np.ndarray, orientation: int) -> np.ndarray:
    """What a viewer shows for a stored image with this EXIF orientation (TIFF/EXIF 2.3, tag 274)."""
    transforms = {
        1: lambda a: a,
        2: lambda a: a[:, ::-1],  # mirrored left-right
        3: lambda a: a[::-1, ::-1],  # turned 180°
        4: lambda a: a[::-1],  # mirrored top-bottom
        5: lambda a: a.swapaxes(0, 1),  # transposed
        6: lambda a: np.rot90(a, -1),  # turned 90° clockwise
        7: lambda a: a[::-1, ::-1].swapaxes(0, 1),  # transversed
        8: lambda a: np.rot90(a, 1),  # turned 90° counter-clockwise
    }
    return np.ascontiguousarray(transforms[orientation](image))


def patch_png_size(png: bytes, width: int, height: int) -> bytes:
    """The PNG with its IHDR claiming another size (its CRC left as it was)."""
    return png[:16] + struct.pack(">II", width, height) + png[24:]


def patch_jpeg_size(jpeg: bytes, width: int, height: int) -> bytes:
    """The JPEG with its SOF segment claiming another size (walks the segments: table bytes may look like
    a marker)."""
    pos = 2
    while pos + 4 <= len(jpeg):
        marker = jpeg[pos + 1]
        (length,) = struct.unpack(">H", jpeg[pos + 2 : pos + 4])
        if marker in (0xC0, 0xC1, 0xC2):
            # marker(2) | length(2) | precision(1) | height(2) | width(2)
            return jpeg[: pos + 5] + struct.pack(">HH", height, width) + jpeg[pos + 9 :]
        pos += 2 + length
    raise ValueError("no SOF0-2 in this JPEG")
