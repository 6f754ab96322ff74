"""Property-based fuzzing of the worker's validation and decoding path (``workers.streams.decode``): every
entry a producer could send ends as an 8-bit BGR image or as ``FrameRejected`` with the right
``DeadReason``, never as any other exception. Thousands of cases: run with
``--hypothesis-show-statistics`` to see how many each property drew."""

from __future__ import annotations

import io
import re
import time

import cv2
import msgpack
import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from image_helpers import (
    jpeg_bomb,
    jpeg_with_orientation,
    patch_jpeg_size,
    patch_png_size,
    png_bomb,
    png_file,
    png_with_orientation,
)
from stream_helpers import image_bytes

from model.image_io import read_header
from schemas.wire import MAX_CONTAINER_LEN, STREAM_FIELD, DeadReason, Frame
from workers.streams.decode import DecodedFrame, FrameRejected, decode_image, parse_entry

FIELD = STREAM_FIELD.encode()
MAX_PAYLOAD = 256 * 1024
MAX_PIXELS = 300 * 300
CAMERA_RE = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")
REQUIRED = ("v", "camera_id", "frame_id", "ts", "image")
# Small images keep each example cheap; their bytes are made once.
PNG = image_bytes(24, 16, fmt=".png", seed=1)
JPEG = image_bytes(24, 16, fmt=".jpg", seed=2)


def fuzz(examples: int) -> settings:
    return settings(
        max_examples=examples,
        deadline=None,  # the machine is shared: a slow example is not a failure
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )


def run(fields: dict[bytes, bytes]) -> DecodedFrame | FrameRejected:
    """The worker's two steps (parse on the event loop, decode in a thread). Any exception other than
    FrameRejected propagates and fails the test."""
    try:
        parsed = parse_entry("1-0", fields, max_payload_bytes=MAX_PAYLOAD, max_pixels=MAX_PIXELS)
        return decode_image(parsed, fields.get(FIELD, b""))
    except FrameRejected as rejected:
        assert rejected.error, "a dead letter needs an error message"
        return rejected


def frame_map(**changes) -> dict:
    base = {"v": 1, "camera_id": "cam-1", "frame_id": 7, "ts": 1.5, "image": PNG}
    return base | changes


def pack(obj) -> dict[bytes, bytes]:
    return {FIELD: msgpack.packb(obj, use_bin_type=True)}


def image_entry(image: bytes) -> dict[bytes, bytes]:
    return pack(frame_map(image=image))


def assert_reason(outcome, reason: DeadReason) -> FrameRejected:
    assert isinstance(outcome, FrameRejected), f"accepted, expected {reason}"
    assert outcome.reason == reason, f"{outcome.reason}: {outcome.error} (expected {reason})"
    return outcome


def assert_image(outcome, width: int, height: int) -> np.ndarray:
    assert isinstance(outcome, DecodedFrame), f"rejected: {outcome}"
    assert outcome.image.dtype == np.uint8 and outcome.image.shape == (height, width, 3)
    return outcome.image


# msgpack values of every type, nested a little.
scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**64 - 1)
    | st.floats(allow_nan=True)
    | st.text(max_size=16)
    | st.binary(max_size=16)
)
values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner, max_size=4),
)


# --- bytes and msgpack ------------------------------------------------------------------------------------


@fuzz(1500)
@given(st.binary(max_size=512))
def test_random_bytes_are_not_msgpack_or_fail_the_schema(payload):
    outcome = run({FIELD: payload})
    try:
        decoded = msgpack.unpackb(payload, raw=False, strict_map_key=True)
    except Exception:
        assert_reason(outcome, DeadReason.NOT_MSGPACK)
        return
    assert_reason(outcome, DeadReason.SCHEMA if isinstance(decoded, dict) else DeadReason.NOT_MSGPACK)


@fuzz(300)
@given(
    st.dictionaries(st.binary(max_size=8).filter(lambda k: k != FIELD), st.binary(max_size=64), max_size=4)
)
def test_an_entry_without_the_msg_field_is_a_schema_error(fields):
    rejected = assert_reason(run(fields), DeadReason.SCHEMA)
    assert "'msg'" in rejected.error


@fuzz(600)
@given(values.filter(lambda v: not isinstance(v, dict)))
def test_a_msgpack_value_that_is_not_a_map_is_not_msgpack(value):
    rejected = assert_reason(run(pack(value)), DeadReason.NOT_MSGPACK)
    assert "expected a map" in rejected.error


@fuzz(300)
@given(
    st.dictionaries(
        st.integers(-(2**63), 2**64 - 1) | st.none() | st.booleans() | st.floats(),
        values,
        min_size=1,
        max_size=3,
    )
)
def test_a_map_with_non_string_keys_is_not_msgpack(obj):
    assume(all(not isinstance(k, str | bytes) for k in obj))
    assert_reason(run({FIELD: msgpack.packb(obj, use_bin_type=True)}), DeadReason.NOT_MSGPACK)


@fuzz(300)
@given(st.dictionaries(st.text(max_size=12) | st.binary(max_size=12), values, max_size=6))
def test_a_random_map_fails_the_schema(obj):
    assume(not set(REQUIRED) <= set(obj))
    assert_reason(run(pack(obj)), DeadReason.SCHEMA)


# --- the Frame schema -------------------------------------------------------------------------------------


def _valid(field: str, value) -> bool:
    """The wire's rules (schemas/wire.py, strict: no coercion) as an independent oracle."""
    if field == "v":
        return type(value) is int and value == 1
    if field == "camera_id":
        return type(value) is str and CAMERA_RE.match(value) is not None and "\n" not in value
    if field == "frame_id":
        return type(value) is int and value >= 0
    if field == "ts":
        return type(value) in (int, float)
    if field == "image":
        return type(value) is bytes and len(value) >= 1
    if field == "meta":
        return value is None or (
            type(value) is dict
            and all(type(k) is str and type(v) in (str, int, float) for k, v in value.items())
        )
    raise AssertionError(field)


@fuzz(1500)
@given(st.sampled_from((*REQUIRED, "meta")), values | st.text(min_size=100, max_size=300))
def test_each_field_with_a_wrong_value_is_a_schema_error_naming_it(field, value):
    outcome = run(pack(frame_map(**{field: value})))
    if _valid(field, value):
        assume(field != "image")  # random bytes as the image: covered by the image properties
        assert_image(outcome, 24, 16)
    else:
        rejected = assert_reason(outcome, DeadReason.SCHEMA)
        assert field in rejected.error


@pytest.mark.parametrize("field", [*REQUIRED, "meta"])
def test_a_missing_field_is_a_schema_error_unless_optional(field):
    obj = frame_map(meta={"site": "a"})
    del obj[field]
    outcome = run(pack(obj))
    if field == "meta":
        assert_image(outcome, 24, 16)
    else:
        rejected = assert_reason(outcome, DeadReason.SCHEMA)
        assert field in rejected.error
        # a frame that fails the schema is still named in its dead letter where it can be
        assert rejected.camera_id == (None if field == "camera_id" else "cam-1")
        assert rejected.frame_id == (None if field == "frame_id" else 7)


@fuzz(400)
@given(st.integers(min_value=-(2**63), max_value=2**64 - 1) | st.sampled_from(["1", 1.0, True, b"1", [1]]))
def test_only_version_1_is_accepted(version):
    outcome = run(pack(frame_map(v=version)))
    if type(version) is int and version == 1:
        assert_image(outcome, 24, 16)
    else:
        assert "v" in assert_reason(outcome, DeadReason.SCHEMA).error


@fuzz(300)
@given(
    st.dictionaries(st.text(max_size=12).filter(lambda k: k not in Frame.model_fields), values, max_size=8)
)
def test_extra_keys_are_ignored(extra):
    outcome = run(pack(frame_map() | extra))
    assert_image(outcome, 24, 16)
    assert outcome.frame.frame_id == 7


@fuzz(200)
@given(
    st.integers(min_value=0, max_value=2 * MAX_PAYLOAD),
    st.sampled_from(["extra_string", "extra_bytes", "meta_string", "big_map", "big_meta", "camera_id"]),
)
def test_huge_strings_and_maps_are_bounded_by_the_payload_limit(size, where):
    if where == "extra_string":
        obj = frame_map(note="x" * size)
    elif where == "extra_bytes":
        obj = frame_map(blob=b"\x00" * size)
    elif where == "meta_string":
        obj = frame_map(meta={"note": "é" * (size // 2)})
    elif where == "big_map":
        obj = frame_map() | {f"k{i}": i for i in range(size // 8)}
    elif where == "big_meta":
        obj = frame_map(meta={f"k{i}": i for i in range(size // 8)})
    else:
        obj = frame_map(camera_id="c" * (size + 129))  # never a valid camera id: 128 characters at most
    payload = msgpack.packb(obj, use_bin_type=True)
    outcome = run({FIELD: payload})
    if len(payload) > MAX_PAYLOAD:
        assert_reason(outcome, DeadReason.TOO_LARGE)
    elif max(len(obj), len(obj.get("meta") or {})) > MAX_CONTAINER_LEN:
        # more entries than any message has: refused while unpacking, before it costs time and memory
        assert "max_map_len" in assert_reason(outcome, DeadReason.NOT_MSGPACK).error
    elif where == "camera_id":
        assert "camera_id" in assert_reason(outcome, DeadReason.SCHEMA).error
    else:
        assert_image(outcome, 24, 16)


@pytest.mark.parametrize("depth", [10, 500, 5000])
def test_deeply_nested_values_never_crash(depth):
    nested: object = 0
    for _ in range(depth):
        nested = [nested]
    try:
        payload = msgpack.packb(frame_map(deep=nested), use_bin_type=True)
    except ValueError:  # msgpack itself refuses to write it: build the bytes by hand
        payload = msgpack.packb(frame_map(), use_bin_type=True)
        payload = bytes([payload[0] + 1]) + payload[1:] + msgpack.packb("deep") + b"\x91" * depth + b"\x00"
    outcome = run({FIELD: payload})
    if isinstance(outcome, FrameRejected):  # msgpack has a nesting limit: deeper is not msgpack to us
        assert outcome.reason == DeadReason.NOT_MSGPACK and depth > 500
    else:
        assert_image(outcome, 24, 16)


# --- images -----------------------------------------------------------------------------------------------


@fuzz(600)
@given(st.sampled_from(["png", "jpeg"]), st.data())
def test_truncated_images_are_bad_images(kind, data):
    image = PNG if kind == "png" else JPEG
    cut = data.draw(st.integers(min_value=1, max_value=len(image) - 1))
    rejected = assert_reason(run(image_entry(image[:cut])), DeadReason.BAD_IMAGE)
    assert rejected.camera_id == "cam-1" and rejected.frame_id == 7


@fuzz(800)
@given(
    st.sampled_from(["png", "jpeg"]),
    st.lists(
        st.tuples(st.integers(min_value=0), st.integers(min_value=0, max_value=255)), min_size=1, max_size=8
    ),
)
def test_corrupt_images_are_rejected_as_bad_or_decoded_at_their_header_size(kind, edits):
    image = bytearray(PNG if kind == "png" else JPEG)
    for position, value in edits:
        image[position % len(image)] = value
    outcome = run(image_entry(bytes(image)))
    if isinstance(outcome, FrameRejected):
        assert outcome.reason in (DeadReason.BAD_IMAGE, DeadReason.TOO_MANY_PIXELS), outcome
        if outcome.reason == DeadReason.TOO_MANY_PIXELS:
            assert read_header(bytes(image)).pixels > MAX_PIXELS
    else:  # damage inside the compressed pixels can decode (with artefacts): never at another size
        header = read_header(bytes(image))
        assert_image(outcome, header.width, header.height)


@fuzz(300)
@given(
    st.sampled_from([b"\x89PNG\r\n\x1a\n", b"\xff\xd8", b"\xff\xd8\xff", b"GIF89a", b"BM", b""]), st.binary()
)
def test_garbage_behind_a_signature_is_rejected(signature, tail):
    assume(signature or tail)
    image = signature + tail
    outcome = run(image_entry(image))
    if isinstance(outcome, FrameRejected):
        assert outcome.reason in (DeadReason.BAD_IMAGE, DeadReason.TOO_MANY_PIXELS, DeadReason.SCHEMA)
        if outcome.reason == DeadReason.SCHEMA:  # the one invalid image value: no bytes at all
            assert image == b""
        if outcome.reason == DeadReason.TOO_MANY_PIXELS:
            assert read_header(image).pixels > MAX_PIXELS
    else:
        header = read_header(image)
        assert_image(outcome, header.width, header.height)


@fuzz(600)
@given(
    st.sampled_from(["png", "jpeg"]),
    st.integers(min_value=0, max_value=70_000),
    st.integers(min_value=0, max_value=70_000),
)
def test_the_pixel_limit_and_empty_images_are_judged_on_the_header(kind, width, height):
    """Each size is an independent oracle here: the header is patched to claim it."""
    if kind == "png":
        image = patch_png_size(PNG, width, height)
    else:
        width, height = min(width, 65535), min(height, 65535)  # a JPEG's size fields are 16-bit
        image = patch_jpeg_size(JPEG, width, height)
    outcome = run(image_entry(image))
    if width * height > MAX_PIXELS:
        rejected = assert_reason(outcome, DeadReason.TOO_MANY_PIXELS)
        assert f"{width}x{height}" in rejected.error
    elif width == 0 or height == 0:
        assert_reason(outcome, DeadReason.BAD_IMAGE)
    elif (width, height) == (24, 16):
        assert_image(outcome, 24, 16)
    elif kind == "png":  # the IHDR's CRC no longer matches
        assert_reason(outcome, DeadReason.BAD_IMAGE)
    elif isinstance(outcome, DecodedFrame):  # a JPEG's data can fill a smaller frame
        assert_image(outcome, width, height)
    else:
        assert_reason(outcome, DeadReason.BAD_IMAGE)


@pytest.mark.parametrize(
    ("image", "reason"),
    [
        (png_file(0, 16, b""), DeadReason.BAD_IMAGE),
        (png_file(16, 0, b""), DeadReason.BAD_IMAGE),
        (png_file(0, 0, b""), DeadReason.BAD_IMAGE),
        (patch_jpeg_size(JPEG, 0, 16), DeadReason.BAD_IMAGE),
        (patch_jpeg_size(JPEG, 24, 0), DeadReason.BAD_IMAGE),  # height 0 means "given by DNL"
        (png_file(2**31, 2**31, b""), DeadReason.TOO_MANY_PIXELS),
        (png_file(2**32 - 1, 1, b""), DeadReason.TOO_MANY_PIXELS),
        (patch_jpeg_size(JPEG, 65535, 65535), DeadReason.TOO_MANY_PIXELS),
    ],
    ids=["png-0xh", "png-wx0", "png-0x0", "jpeg-0xh", "jpeg-wx0", "png-2^62", "png-2^32-1", "jpeg-max"],
)
def test_zero_size_and_absurd_headers(image, reason):
    assert_reason(run(image_entry(image)), reason)


@pytest.mark.parametrize(("kind", "side"), [("png", 6000), ("jpeg", 3000)])
def test_decompression_bombs_are_refused_from_the_header_without_decoding(kind, side, monkeypatch):
    bomb = png_bomb(side) if kind == "png" else jpeg_bomb(side)
    assert len(bomb) < MAX_PAYLOAD  # under the payload limit: 36 M (9 M) pixels once decoded
    assert (read_header(bomb).width, read_header(bomb).height) == (side, side)

    def no_decoding(*args, **kwargs):
        raise AssertionError("the image was decoded")

    monkeypatch.setattr(cv2, "imdecode", no_decoding)
    started = time.perf_counter()
    rejected = assert_reason(run(image_entry(bomb)), DeadReason.TOO_MANY_PIXELS)
    assert time.perf_counter() - started < 0.5
    assert f"{side}x{side}" in rejected.error


def test_a_bomb_under_the_pixel_limit_of_its_settings_decodes():
    """The same bomb is a frame like any other where the limit allows it: the limit is the guard."""
    bomb = png_bomb(1000)
    parsed = parse_entry("1-0", image_entry(bomb), max_payload_bytes=MAX_PAYLOAD, max_pixels=1000 * 1000)
    assert decode_image(parsed).image.shape == (1000, 1000, 3)
    with pytest.raises(FrameRejected) as info:
        parse_entry("1-0", image_entry(bomb), max_payload_bytes=MAX_PAYLOAD, max_pixels=1000 * 1000 - 1)
    assert info.value.reason == DeadReason.TOO_MANY_PIXELS


@pytest.mark.parametrize(
    ("image", "accepted"),
    [
        (b"\xff\xd8" + b"\xff\xd0" * 100_000, False),  # RST markers: no length, no end
        (b"\xff\xd8" + b"\xff" * 200_000, False),  # fill bytes
        (b"\xff\xd8" + b"\xff\xfe\x00\x02" * 50_000, False),  # empty comments
        (PNG[:33] + (b"\x00\x00\x00\x10eXIf" + b"\x00" * 20) * 8_000 + PNG[33:], True),  # bad-CRC eXIf chunks
    ],
    ids=["rst", "fill", "comments", "exif-chunks"],
)
def test_headers_built_to_be_slow_are_cut_short(image, accepted):
    started = time.perf_counter()
    parsed = run(image_entry(image))
    assert time.perf_counter() - started < 0.5
    if accepted:  # libpng skips ancillary chunks with a bad CRC
        assert_image(parsed, 24, 16)
    else:
        assert "markers before its start-of-frame" in assert_reason(parsed, DeadReason.BAD_IMAGE).error


@pytest.mark.parametrize("fmt", [".bmp", ".tiff", ".webp", ".ppm"])
def test_formats_other_than_png_and_jpeg_are_bad_images(fmt):
    """OpenCV would decode them, pixel limit unchecked: the wire carries PNG or JPEG only."""
    ok, data = cv2.imencode(fmt, np.zeros((8, 8, 3), np.uint8))
    assert ok
    rejected = assert_reason(run(image_entry(data.tobytes())), DeadReason.BAD_IMAGE)
    assert "neither a PNG nor a JPEG" in rejected.error


# --- valid but unusual images -----------------------------------------------------------------------------


def _pil_png(pixels: np.ndarray, mode: str, palette: list[int] | None = None) -> bytes:
    from PIL import Image

    height, width = pixels.shape[:2]
    picture = Image.frombytes(mode, (width, height), np.ascontiguousarray(pixels).tobytes())
    if palette is not None:
        picture.putpalette(palette)
    buffer = io.BytesIO()
    picture.save(buffer, "PNG")
    return buffer.getvalue()


@fuzz(300)
@given(
    st.sampled_from(
        ["gray8", "gray16", "bgr8", "bgr16", "bgra8", "bgra16", "gray-alpha", "palette", "1-bit"]
    ),
    st.integers(min_value=1, max_value=40),
    st.integers(min_value=1, max_value=40),
    st.integers(min_value=0, max_value=2**32 - 1),
)
def test_unusual_pngs_are_accepted_as_8bit_bgr(kind, width, height, seed):
    rng = np.random.default_rng(seed)
    depth = np.uint16 if kind.endswith("16") else np.uint8
    top = 65536 if depth is np.uint16 else 256
    channels = {"gray8": 1, "gray16": 1, "bgr8": 3, "bgr16": 3, "bgra8": 4, "bgra16": 4}
    if kind in channels:
        shape = (height, width) if channels[kind] == 1 else (height, width, channels[kind])
        pixels = rng.integers(0, top, shape, dtype=depth)
        ok, encoded = cv2.imencode(".png", pixels)
        assert ok
        image = encoded.tobytes()
        expected = (pixels >> 8).astype(np.uint8) if depth is np.uint16 else pixels  # the high byte
        if expected.ndim == 2:
            expected = np.repeat(expected[:, :, None], 3, axis=2)
        expected = expected[:, :, :3]  # the alpha dropped, not blended
    elif kind == "gray-alpha":
        pixels = rng.integers(0, 256, (height, width, 2), dtype=np.uint8)
        image = _pil_png(pixels, "LA")
        expected = np.repeat(pixels[:, :, :1], 3, axis=2)
    elif kind == "palette":
        indices = rng.integers(0, 4, (height, width), dtype=np.uint8)
        palette = [255, 0, 0, 0, 255, 0, 0, 0, 255, 9, 99, 199]
        image = _pil_png(indices, "P", palette)
        expected = np.asarray(palette, np.uint8).reshape(4, 3)[indices][:, :, ::-1]
    else:  # 1-bit
        bits = rng.integers(0, 2, (height, width)).astype(bool)
        image = _pil_png(np.where(bits, 255, 0).astype(np.uint8), "L")
        from PIL import Image

        buffer = io.BytesIO()
        Image.open(io.BytesIO(image)).convert("1").save(buffer, "PNG")
        image = buffer.getvalue()
        expected = np.repeat(np.where(bits, 255, 0).astype(np.uint8)[:, :, None], 3, axis=2)
    decoded = assert_image(run(image_entry(image)), width, height)
    np.testing.assert_array_equal(decoded, expected)


@fuzz(200)
@given(
    st.sampled_from(["gray", "bgr", "progressive", "cmyk"]),
    st.integers(min_value=1, max_value=48),
    st.integers(min_value=1, max_value=48),
)
def test_unusual_jpegs_are_accepted_as_8bit_bgr(kind, width, height):
    pixels = np.full((height, width, 3), (30, 120, 210), np.uint8)
    if kind == "gray":
        ok, encoded = cv2.imencode(".jpg", pixels[:, :, 1])
    elif kind == "progressive":
        ok, encoded = cv2.imencode(".jpg", pixels, [cv2.IMWRITE_JPEG_PROGRESSIVE, 1])
    elif kind == "bgr":
        ok, encoded = cv2.imencode(".jpg", pixels)
    else:  # a CMYK (Adobe) JPEG, as print workflows write them
        from PIL import Image

        buffer = io.BytesIO()
        Image.fromarray(np.ascontiguousarray(pixels[:, :, ::-1])).convert("CMYK").save(
            buffer, "JPEG", quality=95
        )
        ok, encoded = True, np.frombuffer(buffer.getvalue(), np.uint8)
    assert ok
    decoded = assert_image(run(image_entry(encoded.tobytes())), width, height)
    if kind == "gray":
        assert np.abs(decoded.astype(int) - 120).max() <= 3
    else:  # a flat colour survives JPEG within a few levels, in BGR order (not CMYK read as BGRA)
        assert np.abs(decoded.astype(int) - [30, 120, 210]).max() <= 12


# --- EXIF orientation through the worker's path ------------------------------------------------------------


@fuzz(300)
@given(
    st.sampled_from(["png", "jpeg"]),
    st.integers(min_value=0, max_value=12),
    st.booleans(),
    st.integers(min_value=1, max_value=40),
    st.integers(min_value=1, max_value=40),
)
def test_the_header_size_is_the_decoded_size_whatever_the_orientation(
    kind, orientation, big_endian, width, height
):
    plain = image_bytes(width, height, fmt=".png" if kind == "png" else ".jpg", seed=width * height)
    image = (png_with_orientation if kind == "png" else jpeg_with_orientation)(plain, orientation, big_endian)
    turned = orientation in (5, 6, 7, 8)
    shown = (height, width) if turned else (width, height)
    parsed = parse_entry("1-0", image_entry(image), max_payload_bytes=MAX_PAYLOAD, max_pixels=MAX_PIXELS)
    assert (parsed.width, parsed.height) == shown  # what a stale frame's result reports
    assert_image(run(image_entry(image)), *shown)


def test_the_pixel_limit_does_not_depend_on_the_orientation():
    plain = image_bytes(30, 20, fmt=".jpg")
    for orientation in (1, 6):
        image = jpeg_with_orientation(plain, orientation)
        assert parse_entry("1-0", image_entry(image), max_payload_bytes=MAX_PAYLOAD, max_pixels=600)
        with pytest.raises(FrameRejected) as info:
            parse_entry("1-0", image_entry(image), max_payload_bytes=MAX_PAYLOAD, max_pixels=599)
        assert info.value.reason == DeadReason.TOO_MANY_PIXELS


def test_an_exif_chunk_with_a_bad_crc_is_ignored_as_libpng_does():
    good = png_with_orientation(PNG, 6, big_endian=True)
    assert (read_header(good).width, read_header(good).height) == (16, 24)  # the control: turned
    assert_image(run(image_entry(good)), 16, 24)
    bad = bytearray(good)
    bad[33 + 12 + 22 - 1] ^= 0xFF  # the eXIf chunk's last CRC byte (length, type, 22 bytes of TIFF, CRC)
    assert (read_header(bytes(bad)).width, read_header(bytes(bad)).height) == (24, 16)
    assert_image(run(image_entry(bytes(bad))), 24, 16)
