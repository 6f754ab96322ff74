"""A live model swap: the stages' user_config gets a new checkpoint while frames flow; no frame mixes
versions, the replaced version stays held while frames drain, later frames run the new one."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

pytestmark = pytest.mark.timeout(300)


def test_a_live_swap_never_mixes_versions_in_a_frame(serve_app) -> None:
    def results() -> list[dict]:
        return [r for r in serve_app.messages("results") if r["camera_id"] == "swap"]

    for frame_id in range(16):
        serve_app.publish("swap", frame_id, serve_app.png_image(seed=frame_id % 3))
    serve_app.redeploy(checkpoint=str(serve_app.checkpoints["test-v2"]))
    backbone = serve_app.handle("PoseBackbone")

    def backbone_version() -> str:
        return backbone.model_versions.remote().result()["current"]

    serve_app.wait_for(lambda: backbone_version() == "test-v2", 120, "the backbone on test-v2")
    # The replaced version is still held (its grace period is running) next to the new one.
    residual_versions = serve_app.handle("PoseResidual").model_versions.remote().result()
    assert residual_versions["current"] == "test-v2"
    assert set(residual_versions["held"]) == {"test-v1", "test-v2"}
    for frame_id in range(16, 24):
        serve_app.publish("swap", frame_id, serve_app.png_image(seed=frame_id % 3))
    serve_app.wait_for(lambda: len(results()) == 24, 180, "24 results")

    assert all(r["status"] == "ok" for r in results())
    by_frame: dict[int, set[str]] = {}
    last_events: list[dict] = []
    for event in serve_app.messages("events"):
        if event["camera_id"] == "swap":
            by_frame.setdefault(event["frame_id"], set()).add(event["model"])
            if event["frame_id"] == 23:
                last_events.append(event)
    assert all(len(models) == 1 for models in by_frame.values()), by_frame
    assert by_frame[23] == {"test-v2"}

    # The new version's events equal the single-process pipeline loaded from the new checkpoint.
    from model.pipeline import PosePipeline

    image = cv2.imdecode(np.frombuffer(serve_app.png_image(seed=23 % 3), np.uint8), cv2.IMREAD_COLOR)
    expected = PosePipeline.load(serve_app.checkpoints["test-v2"], device="cpu").predict([image])[0]
    got = sorted(last_events, key=lambda e: e["person"])
    assert len(got) == len(expected) > 0
    for event, person in zip(got, expected, strict=True):
        np.testing.assert_allclose(event["bbox"], person.bbox, atol=1e-3)
        np.testing.assert_allclose(np.asarray(event["keypoints"]), person.keypoints, atol=1e-3)
        assert event["activity"] == person.activity
