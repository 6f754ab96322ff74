"""Sequences: identities persist, joints move a bounded distance per frame, files are written."""

from __future__ import annotations

import json

import cv2
import numpy as np
from pycocotools.coco import COCO
from typer.testing import CliRunner

from model.data.sequence import generate_sequence, iter_sequence_frames
from model.data.skeleton import DEFAULT_ACTIVITIES


def test_identities_persist_and_joints_move_boundedly():
    frames = list(iter_sequence_frames(frames=120, people=4, seed=7, size=(200, 160), fps=25.0))
    assert len(frames) == 120
    seen_ids: set[int] = set()
    activities: set[str] = set()
    steps = []
    previous: dict[int, dict] = {}
    for index, (frame, truth) in enumerate(frames):
        assert frame.shape == (160, 200, 3) and frame.dtype == np.uint8
        assert truth["frame_index"] == index
        ids = [p["track_id"] for p in truth["people"]]
        assert len(ids) == len(set(ids)), "a track id appears twice in one frame"
        current = {p["track_id"]: p for p in truth["people"]}
        for track_id, person in current.items():
            seen_ids.add(track_id)
            activities.add(person["activity"])
            if track_id not in previous:
                continue
            a = np.asarray(previous[track_id]["keypoints"], np.float64)
            b = np.asarray(person["keypoints"], np.float64)
            both = (a[:, 2] > 0) & (b[:, 2] > 0)
            if both.any():
                step = np.linalg.norm(a[both, :2] - b[both, :2], axis=1).max() / person["scale"]
                steps.append(step)
        previous = current
    assert seen_ids <= {1, 2, 3, 4} and len(seen_ids) >= 3
    assert max(steps) < 0.3, "a joint jumped more than 0.3 body heights between frames (identity swap?)"
    assert np.median(steps) > 0.0, "people should move"
    assert len(activities & set(DEFAULT_ACTIVITIES)) >= 3, activities


def test_sequence_is_deterministic_in_memory():
    a = [f for f, _ in iter_sequence_frames(frames=5, people=2, seed=3, size=(96, 96))]
    b = [f for f, _ in iter_sequence_frames(frames=5, people=2, seed=3, size=(96, 96))]
    assert all(np.array_equal(x, y) for x, y in zip(a, b, strict=True))
    assert not np.array_equal(a[0], a[4])  # frames change over time


def test_generate_sequence_writes_frames_json_and_video(tmp_path):
    info = generate_sequence(tmp_path, frames=12, people=3, seed=2, size=(128, 96), progress=False)
    truth = json.loads((tmp_path / "ground_truth.json").read_text())
    assert len(truth["frames"]) == 12 and truth["info"]["people"] == 3
    for frame in truth["frames"]:
        assert (tmp_path / frame["file_name"]).exists()
    coco = COCO(str(tmp_path / "annotations" / "person_keypoints_sequence.json"))
    assert len(coco.getImgIds()) == 12
    assert all("track_id" in ann for ann in coco.dataset["annotations"])
    capture = cv2.VideoCapture(str(info.video))
    count = 0
    while capture.read()[0]:
        count += 1
    capture.release()
    assert count == 12


def test_cli_sequence(tmp_path):
    from workers.cli import app

    result = CliRunner().invoke(
        app,
        [
            "data",
            "sequence",
            "--out",
            str(tmp_path),
            "--frames",
            "4",
            "--people",
            "2",
            "--seed",
            "1",
            "--size",
            "96x64",
            "--no-video",
        ],
    )
    assert result.exit_code == 0, result.output
    assert len(json.loads((tmp_path / "ground_truth.json").read_text())["frames"]) == 4
    assert not (tmp_path / "sequence.mp4").exists()
