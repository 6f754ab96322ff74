"""EventSubscriber against a real Redis: typed messages, positions, groups, and Redis restarts."""

from __future__ import annotations

import threading
import time
import uuid

import pytest

from schemas.examples import examples
from schemas.settings import Settings
from schemas.streams import shard_for
from schemas.wire import STREAM_FIELD, DeadLetter, FrameResult, PersonEvent
from workers.client import EventSubscriber, connect
from workers.redis_server import RedisServer


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    with RedisServer(tmp_path_factory.mktemp("redis-subscriber"), appendfsync="always") as srv:
        yield srv


def _settings(server, shards: int = 1) -> Settings:
    return Settings(redis_url=server.url, stream_prefix=f"t{uuid.uuid4().hex[:8]}", shards=shards)


def _event(camera: str, frame_id: int, person: int = 0) -> PersonEvent:
    base = examples()["person_event"]
    return base.model_copy(
        update={
            "camera_id": camera,
            "frame_id": frame_id,
            "person": person,
            "event_id": PersonEvent.make_id(camera, frame_id, person),
        }
    )


def _write_events(client, settings: Settings, camera: str, frame_ids) -> list[str]:
    key = settings.shard_keys(0).events
    return [client.xadd(key, {STREAM_FIELD: _event(camera, f).to_bytes()}).decode() for f in frame_ids]


def _collect(subscriber: EventSubscriber, out: list, stop: threading.Event) -> threading.Thread:
    def run() -> None:
        for message in subscriber.messages(follow=True):
            out.append(message)
            if stop.is_set():
                return

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


def _wait_for(predicate, timeout_s: float = 30.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.02)
    return predicate()


def test_reads_typed_messages_from_zero_and_from_now(server):
    settings = _settings(server)
    client = connect(server.url)
    keys = settings.shard_keys(0)
    _write_events(client, settings, "a", [1, 2])
    result = examples()["frame_result"]
    client.xadd(keys.results, {STREAM_FIELD: result.to_bytes()})
    client.xadd(keys.dead, {STREAM_FIELD: examples()["dead_letter"].to_bytes()})
    client.xadd(keys.events, {STREAM_FIELD: b"\xc1not msgpack"})  # skipped, not fatal

    everything = EventSubscriber(settings=settings, kinds=("events", "results", "dead"), start="0")
    got = list(everything.messages(follow=False))
    assert sorted(type(m).__name__ for m in got) == [
        "DeadLetter",
        "FrameResult",
        "PersonEvent",
        "PersonEvent",
    ]
    assert [m.frame_id for m in got if isinstance(m, PersonEvent)] == [1, 2]
    assert next(m for m in got if isinstance(m, FrameResult)) == result
    assert isinstance(next(m for m in got if isinstance(m, DeadLetter)), DeadLetter)
    assert everything.skipped == 1

    # "$" is pinned when the subscriber starts: only what comes after that.
    later = EventSubscriber(settings=settings, start="$", block_ms=100)
    assert list(later.messages(follow=False)) == []
    _write_events(client, settings, "a", [3])
    assert [m.frame_id for m in later.messages(follow=True, idle_timeout_s=0.5)] == [3]
    client.close()


def test_camera_filter_and_shard_selection(server):
    settings = _settings(server, shards=3)
    client = connect(server.url)
    for cam in ("north", "south", "east", "west"):
        shard = settings.shard_keys(shard_for(cam, 3))
        client.xadd(shard.events, {STREAM_FIELD: _event(cam, 5).to_bytes()})
    sub = EventSubscriber(settings=settings, start="0", camera_ids=["north", "west"])
    assert sorted(m.camera_id for m in sub.messages(follow=False)) == ["north", "west"]
    every = EventSubscriber(settings=settings, start="0")
    assert sorted(m.camera_id for m in every.messages(follow=False)) == ["east", "north", "south", "west"]
    client.close()


def test_position_reader_survives_redis_restart_without_loss_or_duplicates(server):
    settings = _settings(server)
    writer = connect(server.url)
    _write_events(writer, settings, "cam", range(0, 5))
    sub = EventSubscriber(settings=settings, start="0", block_ms=200)
    received: list[PersonEvent] = []
    stop = threading.Event()
    reader = _collect(sub, received, stop)
    assert _wait_for(lambda: len(received) == 5)

    server.restart()  # same port, same data (append-only file): the reader is blocked in XREAD meanwhile
    _write_events(writer, settings, "cam", range(5, 10))
    assert _wait_for(lambda: len(received) == 10)
    server.restart()
    _write_events(writer, settings, "cam", range(10, 12))
    assert _wait_for(lambda: len(received) == 12)
    stop.set()
    _write_events(writer, settings, "cam", [99])  # wakes the reader so it sees the stop
    reader.join(timeout=10)
    assert [m.frame_id for m in received[:12]] == list(range(12))
    writer.close()


def test_group_reader_acks_and_survives_restart(server):
    settings = _settings(server)
    writer = connect(server.url)
    key = settings.shard_keys(0).events
    _write_events(writer, settings, "cam", range(3))
    sub = EventSubscriber(settings=settings, start="0", group="audit", consumer="c1", block_ms=200)
    received: list[PersonEvent] = []
    stop = threading.Event()
    reader = _collect(sub, received, stop)
    assert _wait_for(lambda: len(received) == 3)
    server.restart()
    _write_events(writer, settings, "cam", range(3, 6))
    assert _wait_for(lambda: len(received) == 6)
    stop.set()
    _write_events(writer, settings, "cam", [99])
    reader.join(timeout=10)
    sub.close()
    assert [m.frame_id for m in received[:6]] == list(range(6))
    # Everything handed to the caller was acknowledged (the last one when the reader stopped).
    assert _wait_for(lambda: writer.xpending(key, "audit")["pending"] == 0, timeout_s=5)

    # A second subscriber in the same group gets nothing already delivered.
    again = EventSubscriber(settings=settings, start="0", group="audit", consumer="c2")
    assert list(again.messages(follow=False)) == []
    writer.close()


def test_group_reader_redelivers_unacked_after_a_crash(server):
    settings = _settings(server)
    writer = connect(server.url)
    _write_events(writer, settings, "cam", range(4))
    first = EventSubscriber(settings=settings, start="0", group="g", consumer="worker-1", count=2)
    stream = first.messages(follow=False)
    assert next(stream).frame_id == 0
    # "Crash": the subscriber is dropped after receiving entries it never acknowledged.
    first.redis.close()
    del stream, first
    again = EventSubscriber(settings=settings, start="0", group="g", consumer="worker-1")
    assert [m.frame_id for m in again.messages(follow=False)] == [0, 1, 2, 3]
    writer.close()


def test_a_restarted_group_reader_takes_over_its_predecessors_pending_entries(server):
    """The default consumer name holds the pid: a restarted subscriber is a new consumer, and the
    entries its predecessor received but never acknowledged must not stay pending under the old name."""
    settings = _settings(server)
    writer = connect(server.url)
    key = settings.shard_keys(0).events
    _write_events(writer, settings, "cam", range(4))
    first = EventSubscriber(settings=settings, start="0", group="g", consumer="pid-1", count=2)
    stream = first.messages(follow=False)
    assert next(stream).frame_id == 0  # frames 0 and 1 are now pending under pid-1
    first.redis.close()
    del stream, first
    patient = EventSubscriber(settings=settings, group="g", consumer="pid-2", claim_idle_ms=None)
    assert [m.frame_id for m in patient.messages(follow=False)] == [2, 3]  # without the takeover
    assert writer.xpending(key, "g")["pending"] == 2
    time.sleep(0.3)
    successor = EventSubscriber(settings=settings, group="g", consumer="pid-3", claim_idle_ms=200)
    assert [m.frame_id for m in successor.messages(follow=False)] == [0, 1]
    assert successor.claimed == 2
    assert writer.xpending(key, "g")["pending"] == 0
    # Entries that were not idle long enough stay with their consumer.
    _write_events(writer, settings, "cam", [4])
    busy = EventSubscriber(settings=settings, group="g", consumer="pid-4", count=1)
    assert next(busy.messages(follow=False)).frame_id == 4
    other = EventSubscriber(settings=settings, group="g", consumer="pid-5", claim_idle_ms=60_000)
    assert list(other.messages(follow=False)) == []
    assert other.claimed == 0
    writer.close()
