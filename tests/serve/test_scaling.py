"""Consumers scale on the backlog: a backlog builds on both shards → BacklogPolicy asks for a second
FrameConsumer replica, which takes a shard from the first; the backlog drains → the extra replica goes.

The deploy file's consumer autoscaling is replaced (a lightweight update, no replica restarts) by one with
short delays and a small ``frames_per_replica``, and restored afterwards.
"""

from __future__ import annotations

import copy
import time

import pytest
import redis

from schemas.streams import shard_for

pytestmark = pytest.mark.timeout(600)

FRAMES_PER_SHARD = 40


def camera_on(shard: int, shards: int) -> str:
    """A camera id that the producers' rule (crc32 mod S) puts on ``shard``."""
    return next(f"scale-{i}" for i in range(1000) if shard_for(f"scale-{i}", shards) == shard)


def stream_consumers(serve_app, shard: int) -> set[str]:
    """Consumer names that read the shard's frames stream through the group."""
    frames = serve_app.settings.shard_keys(shard).frames
    try:
        consumers = serve_app.redis.xinfo_consumers(frames, serve_app.settings.group)
    except redis.exceptions.ResponseError as exc:
        # a replica that has not taken the shard up yet has not created its stream and group: nobody reads it
        if "no such key" not in str(exc).lower() and "nogroup" not in str(exc).lower():
            raise
        return set()
    return {c["name"].decode() for c in consumers}


def test_a_backlog_adds_consumers_and_a_drained_one_removes_them(serve_app) -> None:
    shards = serve_app.settings.shards
    assert shards == 2
    original = copy.deepcopy(serve_app.schema_raw)
    raw = copy.deepcopy(original)
    consumer = next(d for d in raw["applications"][0]["deployments"] if d["name"] == "FrameConsumer")
    consumer["autoscaling_config"].update(
        max_replicas=shards,  # up to the shard count
        upscale_delay_s=1,
        downscale_delay_s=3,
        metrics_interval_s=1,  # with RAY_SERVE_REPLICA_AUTOSCALING_METRIC_PUSH_INTERVAL_S=1 (conftest)
        look_back_period_s=2,
    )
    consumer["autoscaling_config"]["policy"]["policy_kwargs"] = {"frames_per_replica": 4}
    serve_app.deploy(raw)
    assert serve_app.replica_count("FrameConsumer") == 1
    names_before = stream_consumers(serve_app, 0) | stream_consumers(serve_app, 1)

    cameras = {shard: camera_on(shard, shards) for shard in range(shards)}
    try:
        for frame_id in range(FRAMES_PER_SHARD):
            for shard, camera in cameras.items():
                serve_app.publish(camera, frame_id, serve_app.png_image(seed=frame_id % 4), shard=shard)

        peak = 0
        deadline = time.monotonic() + 240
        while peak < shards:
            peak = max(peak, serve_app.replica_count("FrameConsumer"))
            if time.monotonic() > deadline:
                raise AssertionError(f"no second consumer replica; backlog {serve_app.count('frames')}")
            time.sleep(0.2)

        def finished(shard: int) -> int:
            return len([r for r in serve_app.messages("results", shard) if r["camera_id"] == cameras[shard]])

        serve_app.wait_for(
            lambda: all(finished(shard) == FRAMES_PER_SHARD for shard in cameras), 420, "every frame finished"
        )
        # The backlog is gone: the policy asks for one replica again and Serve drains the other away.
        serve_app.wait_for(lambda: serve_app.replica_count("FrameConsumer") == 1, 180, "one consumer again")
    finally:
        serve_app.deploy(original)

    # The added replica worked: a consumer name that was not there before read a shard's stream.
    names_after = stream_consumers(serve_app, 0) | stream_consumers(serve_app, 1)
    assert len(names_after - names_before) >= 1, (names_before, names_after)
    # The books: every frame finished exactly once, ok, none dead, nothing left in the frames streams.
    for shard, camera in cameras.items():
        results = [r for r in serve_app.messages("results", shard) if r["camera_id"] == camera]
        assert sorted(r["frame_id"] for r in results) == list(range(FRAMES_PER_SHARD))
        assert all(r["status"] == "ok" for r in results)
        assert not [d for d in serve_app.messages("dead", shard) if d.get("camera_id") == camera]
        serve_app.wait_for(lambda shard=shard: serve_app.count("frames", shard) == 0, 60, "empty frames")
    # The remaining replica holds every shard again (its share grew when the other left the registry).
    serve_app.wait_for(
        lambda: len(serve_app.handle("FrameConsumer").stats.remote().result()["shards_held"]) == shards,
        60,
        "the remaining consumer to hold both shards",
    )
