"""The Serve application end to end: Redis frames → FrameConsumer → PoseBackbone → PoseResidual →
ActivityClassifier → events. Tests share the session's app and stream; each uses its own camera."""

from __future__ import annotations

import contextlib
import os
import signal

import cv2
import numpy as np
import pytest
import ray

pytestmark = pytest.mark.timeout(300)


def events_of(app, camera_id: str) -> dict[int, list[dict]]:
    by_frame: dict[int, list[dict]] = {}
    for event in app.messages("events"):
        if event["camera_id"] == camera_id:
            by_frame.setdefault(event["frame_id"], []).append(event)
    return by_frame


def results_of(app, camera_id: str) -> list[dict]:
    return [r for r in app.messages("results") if r["camera_id"] == camera_id]


def infer(checkpoint, image_png: bytes, test_time=None):
    """What ``posestream infer`` computes: the single-process pipeline on the decoded image."""
    from model.pipeline import PosePipeline

    pipeline = PosePipeline.load(checkpoint, device="cpu", test_time=test_time)
    image = cv2.imdecode(np.frombuffer(image_png, np.uint8), cv2.IMREAD_COLOR)
    return pipeline.model_version, pipeline.predict([image])[0]


def test_events_equal_the_single_process_pipeline(serve_app) -> None:
    images = {frame_id: serve_app.png_image(seed=100 + frame_id) for frame_id in range(3)}
    for frame_id, image in images.items():
        serve_app.publish("parity", frame_id, image)
    serve_app.wait_for(lambda: len(results_of(serve_app, "parity")) == 3, 120, "3 results")

    from model.tracking import TrackerConfig, TrackerState, update

    events = events_of(serve_app, "parity")
    assert [r["status"] for r in results_of(serve_app, "parity")] == ["ok"] * 3
    tracker = TrackerState()  # the tracker run as `posestream infer VIDEO` runs it, over the same frames
    for frame_id, image in images.items():
        version, expected = infer(serve_app.checkpoints["test-v1"], image)
        tracker, tracked = update(tracker, frame_id, expected, TrackerConfig())
        got = sorted(events.get(frame_id, []), key=lambda e: e["person"])
        assert [(e["track_id"], e["activity_smoothed"]) for e in got] == [
            (t.track_id, t.activity_smoothed) for t in tracked
        ]
        assert len(expected) > 0  # thresholds at 0: the comparison has persons to compare
        assert len(got) == len(expected)
        for event, person in zip(got, expected, strict=True):
            assert event["model"] == version == "test-v1"
            assert (event["width"], event["height"]) == (128, 96)
            np.testing.assert_allclose(event["bbox"], person.bbox, atol=1e-3)
            assert event["score"] == pytest.approx(person.score, abs=1e-4)
            np.testing.assert_allclose(np.asarray(event["keypoints"]), person.keypoints, atol=1e-3)
            assert event["activity"] == person.activity
            assert event["activity_scores"] == pytest.approx(person.activity_scores, abs=1e-4)


def test_test_time_augmentation_in_serve_equals_infer_with_the_same_setting(serve_app) -> None:
    """The backbone's ``test_time`` from the deploy config: the events equal ``posestream infer --scales
    1.0,1.25 --flip`` on the same frames, and differ from the single-view ones."""
    import copy

    from model.test_time import TestTimeAugmentation

    setting = {"scales": [1.0, 1.25], "flip": True}
    plain = serve_app.schema_raw
    raw = copy.deepcopy(plain)
    for deployment in raw["applications"][0]["deployments"]:
        if deployment["name"] == "PoseBackbone":
            deployment["user_config"]["test_time"] = setting
    images = {frame_id: serve_app.png_image(seed=200 + frame_id) for frame_id in range(2)}
    serve_app.deploy(raw)
    try:
        for frame_id, image in images.items():
            serve_app.publish("tta", frame_id, image)
        serve_app.wait_for(lambda: len(results_of(serve_app, "tta")) == 2, 120, "2 results")
    finally:
        serve_app.deploy(plain)
    events = events_of(serve_app, "tta")
    for frame_id, image in images.items():
        _, expected = infer(serve_app.checkpoints["test-v1"], image, TestTimeAugmentation(**setting))
        _, single = infer(serve_app.checkpoints["test-v1"], image)
        got = sorted(events.get(frame_id, []), key=lambda e: e["person"])
        assert len(got) == len(expected) > 0
        for event, person in zip(got, expected, strict=True):
            np.testing.assert_allclose(event["bbox"], person.bbox, atol=1e-3)
            np.testing.assert_allclose(np.asarray(event["keypoints"]), person.keypoints, atol=1e-3)
            assert event["activity"] == person.activity
        assert any(
            not np.allclose(p.keypoints, q.keypoints, atol=1e-2)
            for p, q in zip(expected, single, strict=False)
        )


def test_backbone_runs_batches_larger_than_one(serve_app) -> None:
    before = serve_app.metric_total(serve_app.scrape(), "ray_posestream_batch_size_count", stage="backbone")
    for frame_id in range(24):
        serve_app.publish("load", frame_id, serve_app.png_image(seed=frame_id % 4))
    serve_app.wait_for(lambda: len(results_of(serve_app, "load")) == 24, 180, "24 results")

    sizes = serve_app.handle("PoseBackbone").batch_sizes.remote().result()
    assert max(sizes) > 1, sizes
    assert sum(sizes) >= 24
    # The batch-size histogram counts batches, not frames: fewer batches than frames once they fill.
    serve_app.wait_for(
        lambda: (
            serve_app.metric_total(serve_app.scrape(), "ray_posestream_batch_size_count", stage="backbone")
            > before
        ),
        30,
        "the batch-size histogram to move",
    )
    # Per-camera order survives the batching.
    frame_ids = [r["frame_id"] for r in results_of(serve_app, "load")]
    assert frame_ids == sorted(frame_ids)
    # No in_flight pinned: each shard's window is what the backbone can take next, max_batch_size x
    # running replicas on CPU (no batch queued), as the backbone's versions and Serve's status tell the
    # consumer.
    app = serve_app.schema_raw["applications"][0]
    backbone = next(d for d in app["deployments"] if d["name"] == "PoseBackbone")
    batch = backbone["user_config"]["max_batch_size"]
    windows = serve_app.handle("FrameConsumer").stats.remote().result()["window"]
    expected = {
        "frames": batch,
        "source": "backbone",
        "max_batch_size": batch,
        "replicas": 1,
        "device_type": "cpu",
        "queued_batches": 0,
    }
    assert windows and all(window == expected for window in windows.values()), windows


def replica_names(deployment: str) -> list[str]:
    prefix = f"SERVE_REPLICA::posestream#{deployment}#"
    return [
        a["name"] for a in ray.util.list_named_actors(all_namespaces=True) if a["name"].startswith(prefix)
    ]


def kill_mid_run(serve_app, deployment: str, camera_id: str, frames: int) -> list[dict]:
    """Publish frames, kill the deployment's replica once the first results are out, wait for all."""
    [victim] = replica_names(deployment)
    for frame_id in range(frames):
        serve_app.publish(camera_id, frame_id, serve_app.png_image(seed=frame_id % 5))
    serve_app.wait_for(lambda: len(results_of(serve_app, camera_id)) >= 2, 120, "the first results")
    ray.kill(ray.get_actor(victim, namespace="serve"), no_restart=True)

    serve_app.wait_for(lambda: len(results_of(serve_app, camera_id)) == frames, 240, f"{frames} results")
    results = results_of(serve_app, camera_id)
    assert sorted(r["frame_id"] for r in results) == list(range(frames))
    assert all(r["status"] == "ok" for r in results)
    assert not [d for d in serve_app.messages("dead") if d.get("camera_id") == camera_id]
    # Every frame was acknowledged and deleted; Serve replaced the killed replica.
    serve_app.wait_for(lambda: serve_app.count("frames") == 0, 30, "an empty frames stream")
    serve_app.wait_for(lambda: len(replica_names(deployment)) == 1, 60, "a replacement replica")
    assert victim not in replica_names(deployment)
    # Each frame's persons all come from the one model version.
    for frame_id, events in events_of(serve_app, camera_id).items():
        assert {e["model"] for e in events} == {"test-v1"}, frame_id
    return results


@pytest.mark.faults
def test_killing_a_residual_replica_loses_no_frame(serve_app) -> None:
    kill_mid_run(serve_app, "PoseResidual", "kill-residual", frames=30)


@pytest.mark.faults
def test_killing_the_backbone_mid_batch_retries_and_loses_no_frame(serve_app) -> None:
    consumer = serve_app.handle("FrameConsumer")
    errors_before = consumer.stats.remote().result()["pipeline_errors"]
    kill_mid_run(serve_app, "PoseBackbone", "kill-backbone", frames=30)

    # The backbone is the slow stage, so the kill hits calls in flight: they failed, were retried by the
    # pipeline (bounded) and, when the replacement took longer, left pending and run again by the consumer.
    def failed_calls() -> float:
        text = serve_app.scrape()  # the pipeline's retry counter reaches the endpoint ~10 s later
        retried = serve_app.metric_total(text, "ray_posestream_stage_retries_total", stage="backbone")
        return retried + consumer.stats.remote().result()["pipeline_errors"] - errors_before

    serve_app.wait_for(lambda: failed_calls() > 0, 30, "retried backbone calls")


def _process_id(actor_name: str) -> int:
    from ray._private import state  # the GCS actor table: the one place that names a replica's pid

    [pid] = [a["Pid"] for a in state.actors().values() if a["Name"] == actor_name and a["State"] == "ALIVE"]
    return int(pid)


@pytest.mark.faults
def test_a_hung_residual_replica_is_replaced_and_loses_no_frame(serve_app) -> None:
    """SIGSTOP: the replica neither answers nor dies. Its calls time out and are retried, Serve's health
    check finds it out and replaces it, and every frame ends ok exactly once, in order."""
    deployment, camera_id, frames = "PoseResidual", "hung-residual", 16
    [victim] = replica_names(deployment)
    pid = _process_id(victim)
    for frame_id in range(frames):
        serve_app.publish(camera_id, frame_id, serve_app.png_image(seed=frame_id % 5))
    serve_app.wait_for(lambda: len(results_of(serve_app, camera_id)) >= 2, 120, "the first results")
    os.kill(pid, signal.SIGSTOP)
    try:
        serve_app.wait_for(lambda: victim not in replica_names(deployment), 120, "the hung replica replaced")
        serve_app.wait_for(lambda: len(results_of(serve_app, camera_id)) == frames, 240, f"{frames} results")
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGCONT)  # never leave a stopped process behind
    results = results_of(serve_app, camera_id)
    assert [r["frame_id"] for r in results] == list(range(frames))
    assert all(r["status"] == "ok" for r in results)
    assert not [d for d in serve_app.messages("dead") if d.get("camera_id") == camera_id]
    serve_app.wait_for(lambda: len(replica_names(deployment)) >= 1, 60, "a residual replica")
    consumer = serve_app.handle("FrameConsumer")
    assert consumer.stats.remote().result()["longest_call_s"] < 60  # nothing left hanging in the consumer


def test_metrics_endpoint_shows_the_counters_moving(serve_app) -> None:
    def acked() -> float:
        return serve_app.metric_total(serve_app.scrape(), "ray_posestream_frames_acked_total")

    serve_app.publish("metrics", 0, serve_app.png_image(seed=7))
    serve_app.wait_for(lambda: acked() > 0, 60, "frames_acked on the metrics endpoint")
    start = acked()
    for frame_id in range(1, 4):
        serve_app.publish("metrics", frame_id, serve_app.png_image(seed=7))
    serve_app.wait_for(lambda: acked() >= start + 3, 60, "frames_acked to grow by 3")
    text = serve_app.scrape()
    assert serve_app.metric_total(text, "ray_posestream_frames_consumed_total") >= start + 3
    assert serve_app.metric_total(text, "ray_posestream_events_published_total") > 0
    assert serve_app.metric_total(text, "ray_posestream_stage_latency_ms_count", stage="residual") > 0
    assert serve_app.metric_total(text, "ray_posestream_stage_compute_ms_count", stage="activity") > 0
    assert "ray_posestream_backlog" in text and "ray_posestream_pending" in text
    # per camera, for the dashboard's frames/s per camera and the silent-camera alert
    assert serve_app.metric_total(text, "ray_posestream_camera_frames_total", camera_id="metrics") >= 3
