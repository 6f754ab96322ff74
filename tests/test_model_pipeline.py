"""The stages in a row equal the whole forward; ``posestream infer`` end to end."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest
import torch
from model_helpers import draw_stick_figure, force_detections, make_model, small_config
from typer.testing import CliRunner

from model import pipeline as pipeline_module
from model.checkpoint import save_checkpoint
from model.pipeline import PosePipeline
from model.predictions import Detections, PersonPrediction, PosedPerson
from model.preprocess import preprocess
from model.stages import ActivityStage, BackboneStage, ResidualStage


@pytest.mark.parametrize("assignment", ["network", "baseline"])
def test_stage_by_stage_equals_the_whole_forward(assignment):
    torch.set_num_threads(1)
    config = small_config(peak_threshold=0.0, prn_assignment=assignment)
    model = force_detections(make_model(config))
    frames = [draw_stick_figure(160, 120), draw_stick_figure(90, 200), draw_stick_figure(64, 64)]

    detections = BackboneStage(model, "cpu")(frames)
    assert all(isinstance(d, Detections) for d in detections)
    assert [(d.width, d.height) for d in detections] == [(120, 160), (200, 90), (64, 64)]
    assert all(
        d.peaks.shape == (17, config.peak_top_k, 3) and d.peaks.dtype == np.float32 for d in detections
    )
    posed = ResidualStage(model, "cpu")(detections)
    assert all(isinstance(p, PosedPerson) for image in posed for p in image)
    staged = ActivityStage(model, "cpu")(posed)

    pipeline = PosePipeline(model, "test", device="cpu")
    predicted = pipeline.predict(frames)
    batch, letterboxes = preprocess(frames, config.input_size, config.pixel_mean_bgr)
    whole = model.eval()(batch, letterboxes=letterboxes)

    assert sum(len(image) for image in predicted) > 0
    for via_stages, via_pipeline, via_forward in zip(staged, predicted, whole, strict=True):
        assert len(via_stages) == len(via_pipeline) == via_forward["boxes"].shape[0]
        assert (
            [p.activity for p in via_pipeline] == via_forward["activity"] == [p.activity for p in via_stages]
        )
        for index, person in enumerate(via_pipeline):
            assert isinstance(person, PersonPrediction)
            assert np.array_equal(person.keypoints, via_forward["keypoints"][index].numpy())
            assert np.array_equal(person.keypoints, via_stages[index].keypoints)
            assert person.bbox == tuple(via_forward["boxes"][index].tolist())
            assert person.score == pytest.approx(via_forward["scores"][index].item(), abs=0)
            assert list(person.activity_scores) == list(config.activities)
        # Boxes and keypoints are in the original image's pixels.
        for person in via_pipeline:
            x1, y1, x2, y2 = person.bbox
            assert 0 <= x1 < x2 and 0 <= y1 < y2
    for frame, image in zip(frames, predicted, strict=True):
        for person in image:
            assert person.bbox[2] <= frame.shape[1] and person.bbox[3] <= frame.shape[0]
            found = person.keypoints[person.keypoints[:, 2] > 0]
            assert np.all(found[:, 0] <= frame.shape[1] - 1) and np.all(found[:, 1] <= frame.shape[0] - 1)
    assert pipeline.predict([]) == []


def test_load_without_checkpoint_is_an_untrained_demo_model(tmp_path, monkeypatch):
    monkeypatch.setattr(pipeline_module, "DEFAULT_CHECKPOINT", tmp_path / "absent.pt")
    pipeline = PosePipeline.load(device="cpu")
    assert not pipeline.trained and pipeline.model_version == "untrained-demo"
    assert pipeline.model.config.backbone_depth == 18
    again = PosePipeline.load(device="cpu")  # the same untrained network each time
    first, second = pipeline.model.state_dict(), again.model.state_dict()
    assert all(torch.equal(first[key], second[key]) for key in first)


def _write_detecting_checkpoint(path):
    model = force_detections(make_model(small_config(input_size=(128, 128), peak_threshold=0.0)))
    model.trained_parts = {"keypoint", "detection", "prn", "activity"}
    return save_checkpoint(path, model, version="test-detector")


@pytest.fixture(autouse=True)
def _log_to_each_runner(monkeypatch):
    """``configure_logging`` binds structlog to the sys.stderr of its first call; let every CliRunner
    invocation configure it again, against its own captured stderr."""
    import workers.log

    monkeypatch.setattr(workers.log, "_configured", False)


def _cli():
    from workers.cli import app

    return app


def test_infer_draws_and_prints_person_events(tmp_path):
    from schemas.wire import PersonEvent

    checkpoint = _write_detecting_checkpoint(tmp_path / "detector.pt")
    picture = tmp_path / "figure.png"
    cv2.imwrite(str(picture), draw_stick_figure(160, 120))
    out = tmp_path / "out"
    result = CliRunner().invoke(
        _cli(),
        ["infer", str(picture), "-o", str(out), "--checkpoint", str(checkpoint), "--json", "--device", "cpu"],
    )
    assert result.exit_code == 0, result.output
    drawn = cv2.imread(str(out / "figure.png"))
    assert drawn is not None and drawn.shape == (160, 120, 3)
    assert not np.array_equal(drawn, cv2.imread(str(picture)))  # boxes were drawn

    lines = [line for line in result.stdout.splitlines() if line.strip()]
    events = [PersonEvent.model_validate(json.loads(line)) for line in lines]
    assert events, "the forced detector finds persons"
    for index, event in enumerate(events):
        assert event.event_id == f"cli:0:{index}" and event.camera_id == "cli" and event.frame_id == 0
        assert event.person == index and event.model == "test-detector"
        assert (event.width, event.height) == (120, 160) and event.latency_ms > 0
        assert event.activity in event.activity_scores and len(event.keypoints) == 17
    saved = json.loads((out / "figure.json").read_text())
    assert saved == [json.loads(line) for line in lines]
    assert "UNTRAINED" not in result.stderr


def test_infer_without_checkpoint_warns_loudly(tmp_path, monkeypatch):
    monkeypatch.setattr(pipeline_module, "DEFAULT_CHECKPOINT", tmp_path / "absent.pt")
    picture = tmp_path / "figure.jpg"
    cv2.imwrite(str(picture), draw_stick_figure(80, 60))
    result = CliRunner().invoke(
        _cli(), ["infer", str(picture), "-o", str(tmp_path / "out"), "--device", "cpu"]
    )
    assert result.exit_code == 0, result.output
    assert "UNTRAINED" in result.stderr
    assert (tmp_path / "out" / "figure.jpg").is_file()
    for line in result.stdout.splitlines():  # stdout carries nothing but events
        json.loads(line)


def test_infer_rejects_a_non_image_with_exit_code_2(tmp_path):
    not_image = tmp_path / "notes.png"
    not_image.write_text("certainly not a PNG")
    result = CliRunner().invoke(_cli(), ["infer", str(not_image), "-o", str(tmp_path / "out")])
    assert result.exit_code == 2
    assert result.stderr.strip().splitlines() == [f"error: {not_image}: not a readable image file"]
    assert "Traceback" not in result.output
    missing = CliRunner().invoke(_cli(), ["infer", str(tmp_path / "absent.jpg")])
    assert missing.exit_code == 2 and "Traceback" not in missing.output
    bad_checkpoint = tmp_path / "bad.pt"
    bad_checkpoint.write_bytes(b"junk")
    picture = tmp_path / "figure.png"
    cv2.imwrite(str(picture), draw_stick_figure(80, 60))
    result = CliRunner().invoke(_cli(), ["infer", str(picture), "--checkpoint", str(bad_checkpoint)])
    assert result.exit_code == 2 and "Traceback" not in result.output and "bad.pt" in result.stderr
