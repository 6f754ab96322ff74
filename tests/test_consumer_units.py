"""Pure parts of the consumer without Redis: header sizes, conversions, the ordered window, stale rules."""

from __future__ import annotations

import asyncio

import cv2
import msgpack
import numpy as np
import pytest
from stream_helpers import frame_payload, image_bytes, run_scenario

from schemas.wire import STREAM_FIELD, DeadReason
from workers.streams.decode import FrameRejected, decode_entry, image_size, parse_entry, to_bgr8
from workers.streams.ordering import InFlightWindow, Slot
from workers.streams.stale import StaleCandidate, StalePolicy, StaleRule


@pytest.mark.parametrize("fmt", [".png", ".jpg"])
@pytest.mark.parametrize(("width", "height"), [(1, 1), (96, 64), (37, 501), (1920, 1080)])
def test_header_size_matches_the_decoded_image(fmt, width, height):
    data = image_bytes(width, height, fmt=fmt)
    decoded = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    assert image_size(data) == (width, height) == (decoded.shape[1], decoded.shape[0])


def test_header_size_of_progressive_jpeg_with_exif_like_segments():
    pixels = np.random.default_rng(1).integers(0, 256, (70, 130, 3), dtype=np.uint8)
    ok, data = cv2.imencode(".jpg", pixels, [cv2.IMWRITE_JPEG_PROGRESSIVE, 1])
    assert ok
    data = data.tobytes()
    app1 = b"\xff\xe1" + (2 + 300).to_bytes(2, "big") + b"\xff\xc0" * 150  # SOF-like bytes inside a segment
    assert image_size(data[:2] + app1 + data[2:]) == (130, 70)


@pytest.mark.parametrize(
    "data",
    [b"", b"GIF89a....", b"\x89PNG\r\n\x1a\n\x00\x00", b"\xff\xd8\xff\xe0\x00\x10JFIF", b"\xff\xd8\x00\x00"],
)
def test_header_size_rejects_unreadable_headers(data):
    with pytest.raises(ValueError):
        image_size(data)


@pytest.mark.parametrize(
    ("kind", "fmt"),
    [("gray", ".png"), ("bgra", ".png"), ("gray16", ".png"), ("bgr", ".jpg"), ("gray", ".jpg")],
)
def test_unusual_images_become_8bit_bgr(kind, fmt):
    payload = frame_payload("cam", 1, image_bytes(33, 21, kind=kind, fmt=fmt))
    decoded = decode_entry(
        "1-0", {STREAM_FIELD.encode(): payload}, max_payload_bytes=1 << 20, max_pixels=10**6
    )
    assert decoded.image.shape == (21, 33, 3) and decoded.image.dtype == np.uint8
    assert (decoded.width, decoded.height) == (33, 21)


def test_sixteen_bit_keeps_the_high_byte():
    gray16 = np.full((4, 4), 0xAB12, np.uint16)
    assert to_bgr8(gray16)[0, 0].tolist() == [0xAB, 0xAB, 0xAB]
    bgra = np.zeros((2, 2, 4), np.uint8)
    bgra[..., 2] = 200
    assert to_bgr8(bgra)[0, 0].tolist() == [0, 0, 200]


def test_parse_rejects_with_reasons_before_decoding():
    field = STREAM_FIELD.encode()
    limits = dict(max_payload_bytes=2048, max_pixels=100 * 100)
    cases = {
        DeadReason.SCHEMA: {b"other": b"x"},
        DeadReason.TOO_LARGE: {field: b"\x00" * 4096},
        DeadReason.NOT_MSGPACK: {field: b"\xc1"},
    }
    for reason, fields in cases.items():
        with pytest.raises(FrameRejected) as info:
            parse_entry("1-0", fields, **limits)
        assert info.value.reason == reason
    big = bytearray(image_bytes(8, 8))
    big[16:24] = (101).to_bytes(4, "big") + (100).to_bytes(4, "big")
    with pytest.raises(FrameRejected) as info:
        parse_entry("1-0", {field: frame_payload("cam", 3, bytes(big))}, **limits)
    assert info.value.reason == DeadReason.TOO_MANY_PIXELS
    assert (info.value.camera_id, info.value.frame_id) == ("cam", 3)
    # a valid header over a corrupt body passes parsing and fails only at decode
    corrupt = image_bytes(8, 8)[:40] + b"\x00" * 30
    parsed = parse_entry("1-0", {field: frame_payload("cam", 4, corrupt)}, **limits)
    assert (parsed.width, parsed.height) == (8, 8)
    with pytest.raises(FrameRejected) as info:
        decode_entry("1-0", {field: frame_payload("cam", 4, corrupt)}, **limits)
    assert info.value.reason == DeadReason.BAD_IMAGE


def test_a_frame_without_its_version_is_dead_lettered_as_schema():
    """``v`` is required on the wire (the model's Python default must not fill it in for a reader)."""
    field = STREAM_FIELD.encode()
    limits = dict(max_payload_bytes=1 << 20, max_pixels=100 * 100)
    message = msgpack.unpackb(frame_payload("cam", 5, image_bytes(8, 8)), raw=False)
    assert parse_entry("1-0", {field: msgpack.packb(message)}, **limits).frame.frame_id == 5
    del message["v"]
    with pytest.raises(FrameRejected) as info:
        parse_entry("1-0", {field: msgpack.packb(message)}, **limits)
    assert info.value.reason == DeadReason.SCHEMA
    assert "v" in info.value.error
    assert (info.value.camera_id, info.value.frame_id) == ("cam", 5)


def test_window_publishes_each_camera_in_frame_order():
    published: list[tuple[str | None, int | None]] = []

    async def publish(slots):
        published.extend((s.camera_id, s.frame_id) for s in slots)

    async def scenario() -> None:
        window = InFlightWindow(5, publish)
        a2, a1, b7 = Slot("3-0", "a", 2), Slot("1-0", "a", 1), Slot("2-0", "b", 7)
        dead = Slot("4-0")
        for slot in (a2, a1, b7, dead):
            window.add(slot)
        assert window.room == 1
        window.finish(a2, "ok")
        window.finish(dead, "dead")
        assert await window.flush() == 1  # the dead letter; a2 waits for a1
        window.finish(b7, "ok")
        window.finish(a1, "ok")
        assert await window.flush() == 3
        assert window.room == 5 and len(window) == 0
        assert await asyncio.wait_for(window.wait_for_room(), 1) == 5

    run_scenario(scenario())
    assert published[0] == (None, None)
    assert [p for p in published if p[0] == "a"] == [("a", 1), ("a", 2)]
    assert ("b", 7) in published


def test_stale_rules():
    policy = StalePolicy(max_age_s=1.0, backlog=2)
    frames = [
        StaleCandidate(f"{i}-0", cam, fid, xadd_ms=10_000 + i)
        for i, (cam, fid) in enumerate([("a", 1), ("a", 2), ("b", 5), ("a", 3)])
    ]
    # under the backlog bound and fresh: nothing dropped
    assert policy.classify(frames[:1], now_ms=10_500, backlog=2) == {}
    # over the backlog: a's frames behind a:3 are dropped, b's only frame and a:3 are kept
    assert policy.classify(frames, now_ms=10_500, backlog=3) == {
        "0-0": StaleRule.BEHIND,
        "1-0": StaleRule.BEHIND,
    }
    # old on the Redis clock
    assert policy.classify(frames[2:3], now_ms=12_000, backlog=0) == {"2-0": StaleRule.AGE}
    assert policy.counts == {"behind": 2, "age": 1}
    assert StalePolicy().classify(frames, now_ms=10**9, backlog=10**9) == {}
