"""One rule for reading images (model/image_io.py): the worker's decode and ``posestream infer``'s give the
same pixels and the same size for the same bytes, EXIF orientation applied."""

from __future__ import annotations

import io

import cv2
import numpy as np
import pytest
from image_helpers import exif_tiff, jpeg_with_orientation, oriented, png_with_orientation
from stream_helpers import frame_payload, image_bytes

from model.image_io import decode_bgr8, exif_orientation, read_header, read_image_file
from schemas.wire import STREAM_FIELD
from workers.streams.decode import decode_entry, parse_entry

LIMITS = dict(max_payload_bytes=1 << 20, max_pixels=10**6)


def _marked(width: int = 40, height: int = 24) -> np.ndarray:
    """A picture whose orientation can be read off: a red block top-left, a green one top-right."""
    pixels = np.full((height, width, 3), 90, np.uint8)
    pixels[:6, :8] = (0, 0, 255)
    pixels[:6, -8:] = (0, 255, 0)
    return pixels


def _jpeg(pixels: np.ndarray) -> bytes:
    ok, data = cv2.imencode(".jpg", pixels, [cv2.IMWRITE_JPEG_QUALITY, 98])
    assert ok
    return data.tobytes()


def _worker_decode(image: bytes):
    fields = {STREAM_FIELD.encode(): frame_payload("cam", 1, image)}
    return parse_entry("1-0", fields, **LIMITS), decode_entry("1-0", fields, **LIMITS)


@pytest.mark.parametrize("orientation", range(1, 9))
@pytest.mark.parametrize("big_endian", [False, True])
def test_a_rotated_jpeg_decodes_the_same_in_the_worker_and_in_infer(orientation, big_endian, tmp_path):
    pixels = _marked()
    plain = _jpeg(pixels)
    data = jpeg_with_orientation(plain, orientation, big_endian)  # the APP1 segment written byte by byte
    path = tmp_path / "frame.jpg"
    path.write_bytes(data)

    parsed, worker = _worker_decode(data)
    infer_today = cv2.imread(str(path), cv2.IMREAD_COLOR)  # what `posestream infer` calls now
    infer_shared = read_image_file(path)  # what it calls with the one-line change

    np.testing.assert_array_equal(worker.image, infer_today)
    np.testing.assert_array_equal(worker.image, infer_shared)
    # the oriented picture: the stored pixels turned as a viewer turns them
    stored = cv2.imdecode(np.frombuffer(plain, np.uint8), cv2.IMREAD_COLOR)
    np.testing.assert_array_equal(worker.image, oriented(stored, orientation))
    turned = orientation in (5, 6, 7, 8)
    size = (24, 40) if turned else (40, 24)
    assert (worker.width, worker.height) == size  # the size results and events report
    assert (parsed.width, parsed.height) == size  # also for a frame that is never decoded (stale)
    assert read_header(data).pixels == 40 * 24  # the pixel limit: the header's size, whatever the turn


def test_orientation_6_puts_the_top_left_corner_top_right():
    """Turned 90° clockwise: what was top-left (red) is top-right, what was top-right (green) bottom-right."""
    _, worker = _worker_decode(jpeg_with_orientation(_jpeg(_marked()), 6))
    image = worker.image.astype(int)
    assert worker.image.shape == (40, 24, 3)
    assert np.abs(image[2, -2] - (0, 0, 255)).max() < 40
    assert np.abs(image[-2, -2] - (0, 255, 0)).max() < 40
    assert np.abs(image[2, 2] - 90).max() < 40


def test_orientation_8_turns_the_other_way():
    _, worker = _worker_decode(jpeg_with_orientation(_jpeg(_marked()), 8))
    image = worker.image.astype(int)
    assert (worker.width, worker.height) == (24, 40)
    assert np.abs(image[-2, 2] - (0, 0, 255)).max() < 40  # top-left → bottom-left
    assert np.abs(image[2, 2] - (0, 255, 0)).max() < 40  # top-right → top-left


def test_the_old_worker_decode_ignored_the_orientation():
    """The disagreement this rule removes: IMREAD_UNCHANGED keeps the stored 40×24."""
    data = jpeg_with_orientation(_jpeg(_marked()), 6)
    assert cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED).shape == (24, 40, 3)
    assert decode_bgr8(data).shape == (40, 24, 3)


def test_pillow_written_exif_is_read_the_same():
    from PIL import Image

    picture = Image.fromarray(np.ascontiguousarray(_marked()[:, :, ::-1]))
    exif = Image.Exif()
    exif[0x0112] = 6
    for fmt in ("JPEG", "PNG"):
        buffer = io.BytesIO()
        picture.save(buffer, fmt, exif=exif.tobytes(), quality=98)
        data = buffer.getvalue()
        header = read_header(data)
        assert (header.orientation, header.width, header.height) == (6, 24, 40)
        assert decode_bgr8(data).shape == (40, 24, 3)


@pytest.mark.parametrize("orientation", [3, 6, 7])
def test_a_rotated_png_is_lossless_through_both_paths(orientation, tmp_path):
    pixels = np.random.default_rng(orientation).integers(0, 256, (13, 29, 3), dtype=np.uint8)
    ok, plain = cv2.imencode(".png", pixels)
    assert ok
    data = png_with_orientation(plain.tobytes(), orientation)
    path = tmp_path / "frame.png"
    path.write_bytes(data)
    _, worker = _worker_decode(data)
    np.testing.assert_array_equal(worker.image, oriented(pixels, orientation))
    np.testing.assert_array_equal(read_image_file(path), worker.image)


def test_exif_orientation_reads_only_what_opencv_reads():
    assert exif_orientation(exif_tiff(6)) == 6
    assert exif_orientation(exif_tiff(8, big_endian=True)) == 8
    assert exif_orientation(exif_tiff(0)) == 1  # out of range: as no tag
    assert exif_orientation(exif_tiff(9)) == 1
    assert exif_orientation(b"") == 1
    assert exif_orientation(b"XX" + exif_tiff(6)[2:]) == 1  # no byte order
    assert exif_orientation(exif_tiff(6)[:-8]) == 1  # the entry cut off


def test_an_xmp_app1_before_the_exif_one_is_skipped():
    plain = _jpeg(_marked())
    xmp = b"http://ns.adobe.com/xap/1.0/\x00<x:xmpmeta/>"
    data = jpeg_with_orientation(plain, 6)
    data = data[:2] + b"\xff\xe1" + (len(xmp) + 2).to_bytes(2, "big") + xmp + data[2:]
    assert read_header(data).orientation == 6
    assert decode_bgr8(data).shape == (40, 24, 3)


def test_read_image_file_is_none_for_what_is_not_an_image(tmp_path):
    (tmp_path / "text.jpg").write_text("not an image")
    assert read_image_file(tmp_path / "text.jpg") is None
    assert read_image_file(tmp_path / "absent.png") is None
    assert read_image_file(tmp_path) is None  # a folder
    (tmp_path / "ok.png").write_bytes(image_bytes(5, 3, kind="gray16"))
    assert read_image_file(tmp_path / "ok.png").shape == (3, 5, 3)
