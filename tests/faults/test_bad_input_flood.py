"""A flood of bad input through the real worker: ≥ 1,000 generated bad entries of every kind, mixed with
good frames, published into a real Redis and consumed by ``StreamConsumer`` (FakePipeline). Every bad
entry is dead-lettered with its reason, every good frame gets an ok result at its oriented size, the
consumer never fails, and its memory stays bounded."""

from __future__ import annotations

import asyncio
import gc
import random
import time
from collections import Counter
from dataclasses import dataclass

import msgpack
import psutil
import pytest
import redis
from harness import Published, check_books
from image_helpers import jpeg_with_orientation, patch_jpeg_size, patch_png_size, png_file
from stream_helpers import FakePipeline, consumer_settings, image_bytes, outputs, run_scenario, wait_until

from schemas.settings import Settings
from schemas.streams import shard_for
from schemas.wire import STREAM_FIELD, DeadReason
from workers.streams import StreamConsumer, connect

BAD_ENTRIES = 1200
GOOD_EVERY = 4  # one good frame after every four bad entries: 300 good frames
CAMERAS = [f"flood-{i}" for i in range(8)]
MAX_PAYLOAD = 64 * 1024
MAX_PIXELS = 512 * 512
RSS_BOUND_MB = 200


@dataclass(frozen=True)
class Entry:
    fields: dict[str, bytes]
    kind: str  # "good" or the DeadReason value expected
    camera_id: str | None  # the shard's camera (bad ids go to a chosen shard)
    frame_id: int | None
    size: tuple[int, int] | None = None  # a good frame's oriented size


class Generator:
    """Bad entries of every kind, in rotation, and good frames between them; deterministic for a seed."""

    def __init__(self, seed: int = 21):
        self.rng = random.Random(seed)
        self.next_frame = Counter()
        png, jpeg = image_bytes(32, 24, fmt=".png"), image_bytes(32, 24, fmt=".jpg")
        self.png, self.jpeg = png, jpeg
        self.good_images = [
            (png, (32, 24)),
            (image_bytes(20, 30, kind="gray16"), (20, 30)),
            (image_bytes(28, 18, kind="bgra"), (28, 18)),
            (jpeg, (32, 24)),
            (jpeg_with_orientation(jpeg, 6), (24, 32)),  # EXIF-rotated: reported turned
        ]
        r = self.rng
        # Each maker: (expected reason, frame-map change or raw payload).
        self.makers = [
            (DeadReason.NOT_MSGPACK, lambda: b"\xc1" + r.randbytes(r.randrange(0, 300))),
            (DeadReason.NOT_MSGPACK, lambda: self.packed()[: r.randrange(1, 40)]),  # cut short
            (DeadReason.NOT_MSGPACK, lambda: msgpack.packb(r.choice([[1, 2], 7, "frame", None, b"x", 1.5]))),
            (DeadReason.NOT_MSGPACK, lambda: msgpack.packb({1: "int keys", 2: "are not a map of names"})),
            (DeadReason.SCHEMA, "no msg field"),
            (DeadReason.SCHEMA, lambda: self.packed(drop="v")),
            (DeadReason.SCHEMA, lambda: self.packed(v=r.choice([0, 2, 99, "1", True, 1.0, None]))),
            (
                DeadReason.SCHEMA,
                lambda: self.packed(camera_id=r.choice(["", "../..", "a b", "é", "x" * 200])),
            ),
            (DeadReason.SCHEMA, lambda: self.packed(frame_id=r.choice([-1, "5", 1.5, None]))),
            (DeadReason.SCHEMA, lambda: self.packed(ts=r.choice(["now", None, [1.0]]))),
            (DeadReason.SCHEMA, lambda: self.packed(image=r.choice([b"", "a string", 5]))),
            (DeadReason.SCHEMA, lambda: self.packed(meta={"k": [1, 2]})),
            (DeadReason.SCHEMA, lambda: self.packed(drop=r.choice(["camera_id", "frame_id", "ts", "image"]))),
            (DeadReason.TOO_LARGE, lambda: self.packed(padding="p" * (MAX_PAYLOAD + r.randrange(1, 5000)))),
            (DeadReason.BAD_IMAGE, lambda: self.packed(image=self.png[: r.randrange(1, len(self.png))])),
            (DeadReason.BAD_IMAGE, lambda: self.packed(image=self.jpeg[: r.randrange(1, len(self.jpeg))])),
            (DeadReason.BAD_IMAGE, lambda: self.packed(image=b"\x89PNG\r\n\x1a\n" + r.randbytes(64))),
            (DeadReason.BAD_IMAGE, lambda: self.packed(image=b"GIF89a" + r.randbytes(32))),
            (DeadReason.BAD_IMAGE, lambda: self.packed(image=png_file(0, r.randrange(1, 9), b""))),
            (DeadReason.BAD_IMAGE, lambda: self.packed(image=patch_png_size(self.png, 31, 24))),  # bad CRC
            (DeadReason.BAD_IMAGE, lambda: self.packed(image=b"\xff\xd8" + b"\xff\xd0" * 20_000)),
            (DeadReason.TOO_MANY_PIXELS, lambda: self.packed(image=patch_png_size(self.png, 5000, 5000))),
            (DeadReason.TOO_MANY_PIXELS, lambda: self.packed(image=patch_jpeg_size(self.jpeg, 4000, 4000))),
        ]

    def frame_id(self, camera: str) -> int:
        self.next_frame[camera] += 1
        return self.next_frame[camera]

    def packed(self, drop: str | None = None, **changes) -> bytes:
        self.camera = self.rng.choice(CAMERAS)
        self.frame = self.frame_id(self.camera)
        obj = {"v": 1, "camera_id": self.camera, "frame_id": self.frame, "ts": time.time(), "image": self.png}
        obj |= changes
        obj.pop(drop, None)
        return msgpack.packb(obj, use_bin_type=True)

    def bad(self, index: int) -> Entry:
        reason, make = self.makers[index % len(self.makers)]
        self.camera, self.frame = None, None
        fields = {"payload": self.packed()} if make == "no msg field" else {STREAM_FIELD: make()}
        # The dead letter names the frame only when its id fields are valid; the shard is the camera's.
        camera = self.camera or self.rng.choice(CAMERAS)
        return Entry(fields, reason.value, camera, None)

    def good(self) -> Entry:
        image, size = self.rng.choice(self.good_images)
        camera = self.rng.choice(CAMERAS)
        frame_id = self.frame_id(camera)
        obj = {"v": 1, "camera_id": camera, "frame_id": frame_id, "ts": time.time(), "image": image}
        return Entry({STREAM_FIELD: msgpack.packb(obj, use_bin_type=True)}, "good", camera, frame_id, size)


def _publish(client: redis.Redis, settings: Settings, entries: list[Entry]) -> list[Published]:
    published: list[Published] = []
    with client.pipeline(transaction=False) as pipe:
        for entry in entries:
            pipe.xadd(settings.shard_keys(shard_for(entry.camera_id, settings.shards)).frames, entry.fields)
        ids = pipe.execute()
    for entry, entry_id in zip(entries, ids, strict=True):
        shard = shard_for(entry.camera_id, settings.shards)
        published.append(Published(entry_id.decode(), shard, entry.kind, entry.camera_id, entry.frame_id))
    return published


def _rss_mb() -> float:
    return psutil.Process().memory_info().rss / 2**20


def test_a_flood_of_bad_entries_is_dead_lettered_and_good_frames_still_run(
    redis_url, sync_redis, books_table
):
    settings = consumer_settings(
        redis_url,
        shards=2,
        read_batch=32,
        in_flight=64,
        max_payload_bytes=MAX_PAYLOAD,
        max_pixels=MAX_PIXELS,
        dead_payload_bytes=256,
        lease_ttl_ms=5000,
    )
    generator = Generator()
    entries: list[Entry] = []
    for index in range(BAD_ENTRIES):
        entries.append(generator.bad(index))
        if index % GOOD_EVERY == GOOD_EVERY - 1:
            entries.append(generator.good())
    published = _publish(sync_redis, settings, entries)
    expected = Counter(e.kind for e in entries)
    assert sum(n for kind, n in expected.items() if kind != "good") == BAD_ENTRIES
    assert set(expected) == {"good", *(reason.value for reason in DeadReason if reason != DeadReason.POISON)}

    async def scenario() -> tuple[dict, float, float, float]:
        client = connect(redis_url, settings)
        pipeline = FakePipeline()
        consumer = StreamConsumer(client, pipeline, settings, name="flood")
        gc.collect()
        before = peak = _rss_mb()
        task = asyncio.create_task(consumer.run())
        started = time.monotonic()

        def finished() -> bool:
            nonlocal peak
            peak = max(peak, _rss_mb())
            done = sum(
                sync_redis.xlen(k.results) + sync_redis.xlen(k.dead) for k in settings.all_shard_keys()
            )
            return done >= len(entries) or task.done()

        try:
            await wait_until(finished, timeout_s=80, what="every entry finished")
            assert not task.done(), f"the consumer stopped by itself: {task}"  # it must outlive the flood
        finally:
            consumer.stop()
            async with asyncio.timeout(30):
                await task  # re-raises if the consumer failed
            await client.aclose()
        elapsed = time.monotonic() - started
        gc.collect()
        return consumer.stats(), before, max(peak, _rss_mb()), elapsed

    stats, before, peak, elapsed = run_scenario(scenario(), timeout_s=110, what="the flood")
    row = check_books(sync_redis, settings, published, "bad-input flood")
    found = outputs(sync_redis, settings)

    dead = Counter(letter["reason"] for letter in found["dead"])
    assert dead == {kind: n for kind, n in expected.items() if kind != "good"}
    assert all(letter["error"] for letter in found["dead"])
    assert all(len(letter["payload"]) <= 256 for letter in found["dead"])  # dead_payload_bytes
    results = found["results"]
    assert len(results) == expected["good"] and all(r["status"] == "ok" for r in results)
    sizes = {(e.camera_id, e.frame_id): e.size for e in entries if e.kind == "good"}
    assert all((r["width"], r["height"]) == sizes[(r["camera_id"], r["frame_id"])] for r in results)
    assert all(r["persons"] == 1 for r in results)
    assert stats["pipeline_errors"] == 0 and stats["redis_errors"] == 0 and stats["leases_lost"] == 0
    assert stats["frames_dead"] == BAD_ENTRIES and stats["frames_ok"] == expected["good"]
    assert stats["redeliveries"] == 0  # no bad entry took the consumer down and came back

    growth = peak - before
    print(
        f"\nbad-input flood: {len(entries)} entries ({BAD_ENTRIES} bad, {expected['good']} good) in "
        f"{elapsed:.1f} s; RSS {before:.0f} MB before, {peak:.0f} MB peak: growth {growth:.1f} MB"
    )
    row.notes.update(seconds=round(elapsed, 1), rss_growth_mb=round(growth, 1))
    books_table(row)
    assert growth < RSS_BOUND_MB, f"RSS grew {growth:.0f} MB over the flood"


@pytest.mark.parametrize("reason", [r for r in DeadReason if r != DeadReason.POISON])
def test_the_generator_makes_each_reason(reason):
    """The flood's premise, checked without Redis: each maker's entry is rejected with its reason."""
    from workers.streams.decode import FrameRejected, decode_image, parse_entry

    generator = Generator(seed=5)
    indices = [i for i, (r, _) in enumerate(generator.makers) if r == reason]
    assert indices
    for index in indices * 5:
        entry = generator.bad(index)
        fields = {k.encode(): v for k, v in entry.fields.items()}
        with pytest.raises(FrameRejected) as info:
            parsed = parse_entry("1-0", fields, max_payload_bytes=MAX_PAYLOAD, max_pixels=MAX_PIXELS)
            decode_image(parsed)
        assert info.value.reason == reason, info.value.error
