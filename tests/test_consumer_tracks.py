"""Tracks in the stream worker, on a real redis-server: track ids and smoothed activity in the events,
ActivityChanges on their own stream, the per-camera state in Redis across a crash and a takeover, stale
frames as missed frames, and frames the tracker is past published as stale."""

from __future__ import annotations

import asyncio
import random
import time

import pytest
import redis
from scripted_people import ACTIVITIES, ScriptedPeople, numbered_image, person
from stream_helpers import (
    consumer_settings,
    frame_payload,
    publish,
    read_messages,
    run_scenario,
    run_worker,
    wait_until,
)

from model.tracking import TrackerState
from schemas.streams import shard_for
from schemas.wire import ActivityChange, PersonEvent
from workers.client import EventSubscriber
from workers.streams import StreamConsumer, connect

CAMERA = "hall-cam"


def publish_frames(client: redis.Redis, settings, frame_ids: range | list[int]) -> None:
    for frame_id in frame_ids:
        publish(client, settings, CAMERA, frame_payload(CAMERA, frame_id, numbered_image(frame_id)))


def shard_outputs(sync_redis, settings) -> tuple[list[dict], list[dict], list[dict]]:
    keys = settings.shard_keys(shard_for(CAMERA, settings.shards))
    return (
        read_messages(sync_redis, keys.events),
        read_messages(sync_redis, keys.results),
        read_messages(sync_redis, keys.changes),
    )


def stored_state(sync_redis, settings) -> TrackerState:
    keys = settings.shard_keys(shard_for(CAMERA, settings.shards))
    return TrackerState.from_bytes(sync_redis.get(keys.track_state(CAMERA)))


def test_walk_run_sit_changes_once_per_transition_while_raw_labels_flicker(redis_url, sync_redis):
    settings = consumer_settings(redis_url, shards=1, track_vote_window=9)
    rng = random.Random(19)
    truth = ["walking"] * 20 + ["running"] * 20 + ["sitting"] * 20
    script = {}
    for index, label in enumerate(truth):
        noisy = rng.choice([a for a in ACTIVITIES if a != label]) if rng.random() < 0.25 else label
        script[index] = [person(20.0 + 3 * index, noisy)]
    publish_frames(sync_redis, settings, range(len(truth)))
    stats = run_worker(redis_url, sync_redis, settings, ScriptedPeople(script), len(truth))

    events, results, changes = shard_outputs(sync_redis, settings)
    assert [r["status"] for r in results] == ["ok"] * len(truth)
    events.sort(key=lambda e: e["frame_id"])
    assert {e["track_id"] for e in events} == {1}
    raw = [e["activity"] for e in events]
    smoothed = [e["activity_smoothed"] for e in events]
    flips = lambda labels: [i for i in range(1, len(labels)) if labels[i] != labels[i - 1]]  # noqa: E731
    assert len(flips(raw)) >= 10  # the noise is real
    assert smoothed[0] == "walking" and smoothed[-1] == "sitting"
    changed_at = flips(smoothed)
    assert len(changed_at) == 2
    assert 20 <= changed_at[0] < 20 + 9 and 40 <= changed_at[1] < 40 + 9  # within the vote window

    assert [(c["previous"], c["activity"]) for c in changes] == [
        ("walking", "running"),
        ("running", "sitting"),
    ]
    assert [c["frame_id"] for c in changes] == changed_at
    assert all(c["track_id"] == 1 and c["camera_id"] == CAMERA for c in changes)
    assert stats["activity_changes"] == 2

    # The typed subscriber method reads the same two changes.
    with EventSubscriber(settings=settings, kinds=("changes",), start="0", block_ms=50) as subscriber:
        typed = list(subscriber.activity_changes(follow=False))
    assert all(isinstance(c, ActivityChange) for c in typed)
    assert [(c.previous, c.activity, c.frame_id) for c in typed] == [
        (c["previous"], c["activity"], c["frame_id"]) for c in changes
    ]
    with pytest.raises(ValueError, match="changes"):
        next(EventSubscriber(settings=settings, kinds=("events",), start="0").activity_changes(follow=False))


def test_two_people_keep_their_ids_across_a_crash_and_a_takeover(redis_url, sync_redis):
    """Frames 0-2 are published by a first consumer that then crashes with frame 3 in flight; a second
    consumer (new process state) takes the shard and the stored state continues the same tracks."""
    settings = consumer_settings(redis_url, shards=1, in_flight=1, read_batch=1, lease_ttl_ms=600)
    script = {
        i: [person(20.0 + 4 * i, "walking"), person(400.0 - 4 * i, "standing", y=120.0)] for i in range(6)
    }
    publish_frames(sync_redis, settings, range(6))
    keys = settings.shard_keys(0)

    async def crash_then_take_over() -> tuple[list[int], dict]:
        gate = asyncio.Event()  # never set: frame 3 hangs in the first consumer
        client_a = connect(redis_url, settings)
        first = StreamConsumer(client_a, ScriptedPeople(script, gate), settings, name="first")
        task_a = asyncio.create_task(first.run())
        await wait_until(lambda: sync_redis.xlen(keys.results) >= 3, 30, "frames 0-2")
        task_a.cancel()  # a crash: frame 3 stays pending, the lease lapses
        await asyncio.gather(task_a, return_exceptions=True)
        await client_a.aclose()
        client_b = connect(redis_url, settings)
        pipeline_b = ScriptedPeople(script)
        second = StreamConsumer(client_b, pipeline_b, settings, name="second")
        task_b = asyncio.create_task(second.run())
        await wait_until(lambda: sync_redis.xlen(keys.results) >= 6, 30, "frames 3-5")
        second.stop()
        await task_b
        await client_b.aclose()
        return pipeline_b.seen, second.stats()

    seen_by_second, stats = run_scenario(crash_then_take_over())
    assert sorted(seen_by_second) == [3, 4, 5]
    assert stats["redeliveries"] >= 1  # frame 3 came back to the second consumer
    events, results, _changes = shard_outputs(sync_redis, settings)
    assert [r["frame_id"] for r in results] == list(range(6))
    ids = {(e["frame_id"], e["person"]): e["track_id"] for e in events}
    assert {ids[(f, 0)] for f in range(6)} == {1} and {ids[(f, 1)] for f in range(6)} == {2}
    state = stored_state(sync_redis, settings)
    assert state.last_frame_id == 5 and state.next_track_id == 3
    assert sorted(track.hits for track in state.tracks) == [6, 6]  # each frame moved the tracker once
    assert 0 < sync_redis.pttl(keys.track_state(CAMERA)) <= settings.track_state_ttl_s * 1000


@pytest.mark.parametrize(("max_missed", "same_track"), [(2, False), (5, True)])
def test_stale_frames_count_as_missed_frames(redis_url, sync_redis, max_missed, same_track):
    """Three frames dropped as stale between two sightings: past a grace of 2 missed frames the person
    comes back as a new track, within a grace of 5 as the same one."""
    settings = consumer_settings(
        redis_url,
        shards=1,
        stale_max_age_s=0.4,
        track_max_missed_frames=max_missed,
        in_flight=1,
        read_batch=1,
    )
    script = {i: [person(50.0, "standing")] for i in range(5)}
    publish_frames(sync_redis, settings, [0])
    run_worker(redis_url, sync_redis, settings, ScriptedPeople(script), 1)
    publish_frames(sync_redis, settings, [1, 2, 3])
    time.sleep(0.6)  # older than stale_max_age_s when the worker reads them
    publish_frames(sync_redis, settings, [4])
    run_worker(redis_url, sync_redis, settings, ScriptedPeople(script), 5)
    events, results, _ = shard_outputs(sync_redis, settings)
    assert [r["status"] for r in results] == ["ok", "stale", "stale", "stale", "ok"]
    ids = [e["track_id"] for e in sorted(events, key=lambda e: e["frame_id"])]
    assert ids == ([1, 1] if same_track else [1, 2])


def test_a_frame_older_than_the_tracked_one_is_published_stale(redis_url, sync_redis):
    settings = consumer_settings(redis_url, shards=1)
    script = {i: [person(50.0, "standing")] for i in range(12)}
    publish_frames(sync_redis, settings, [10])
    run_worker(redis_url, sync_redis, settings, ScriptedPeople(script), 1)
    publish_frames(sync_redis, settings, [5, 11])  # 5 breaks the camera's order
    stats = run_worker(redis_url, sync_redis, settings, ScriptedPeople(script), 3)
    _events, results, _ = shard_outputs(sync_redis, settings)
    assert [(r["frame_id"], r["status"]) for r in results] == [(10, "ok"), (5, "stale"), (11, "ok")]
    assert stats["stale_by_rule"] == {"overtaken": 1}
    assert stored_state(sync_redis, settings).last_frame_id == 11


def test_tracking_off_leaves_the_keys_out(redis_url, sync_redis):
    settings = consumer_settings(redis_url, shards=1, tracking=False)
    publish_frames(sync_redis, settings, [0, 1])
    run_worker(
        redis_url, sync_redis, settings, ScriptedPeople({i: [person(50.0, "standing")] for i in range(2)}), 2
    )
    events, _results, changes = shard_outputs(sync_redis, settings)
    assert len(events) == 2 and not changes
    assert all("track_id" not in e and "activity_smoothed" not in e for e in events)
    assert all(PersonEvent.from_map(e).track_id is None for e in events)
    assert sync_redis.get(settings.shard_keys(0).track_state(CAMERA)) is None
