"""A frame's own ``max_age_s`` (an optional v1 key): older than that when the worker reads it → ``stale``."""

from __future__ import annotations

import time

from scripted_people import ScriptedPeople, numbered_image, person
from stream_helpers import consumer_settings, frame_payload, publish, read_messages, run_worker

CAMERA = "door-cam"


def test_frames_past_their_own_max_age_are_stale_and_the_rest_run(redis_url, sync_redis):
    settings = consumer_settings(redis_url, shards=1, preview_fps=0)  # no operator age rule
    script = {i: [person(40.0, "standing")] for i in range(6)}
    for frame_id in range(3):  # live frames that will have waited too long
        publish(
            sync_redis,
            settings,
            CAMERA,
            frame_payload(CAMERA, frame_id, numbered_image(frame_id), max_age_s=0.3),
        )
    time.sleep(0.6)
    publish(sync_redis, settings, CAMERA, frame_payload(CAMERA, 3, numbered_image(3), max_age_s=30.0))
    publish(sync_redis, settings, CAMERA, frame_payload(CAMERA, 4, numbered_image(4)))  # no bound: a file
    stats = run_worker(redis_url, sync_redis, settings, ScriptedPeople(script), 5)

    results = read_messages(sync_redis, settings.shard_keys(0).results)
    assert [(r["frame_id"], r["status"]) for r in results] == [
        (0, "stale"), (1, "stale"), (2, "stale"), (3, "ok"), (4, "ok")
    ]  # fmt: skip
    assert stats["stale_by_rule"] == {"max_age": 3}
