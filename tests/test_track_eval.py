"""Tracking evaluation: the identity metrics, ground-truth detections on a crossing sequence, the model
path's scoring, and ``posestream eval tracks``."""

from __future__ import annotations

import json

import numpy as np
from typer.testing import CliRunner

from model.evaluation.identity_metrics import FrameIdentities, IdentityScores, score_identities
from model.evaluation.track_eval import (
    DetectionNoise,
    evaluate_ground_truth,
    evaluate_model,
    match_to_ground_truth,
)
from model.predictions import PersonPrediction


def frames_with(track_of, count: int = 20):
    """``count`` frames of ground-truth people 1 and 2; ``track_of(frame, gt)`` is the track reported."""
    return [
        FrameIdentities((1, 2), (track_of(i, 1), track_of(i, 2)), ((1, track_of(i, 1)), (2, track_of(i, 2))))
        for i in range(count)
    ]


def test_perfect_tracks_score_perfectly():
    scores = score_identities(frames_with(lambda i, gt: gt + 10))
    assert scores.switches == 0 and scores.idf1 == 1.0 and scores.right_identity_share == 1.0


def test_a_deliberate_id_swap_is_caught():
    """From frame 12 on, the two tracks trade people: two switches, 8 of 20 frames each wrong."""
    scores = score_identities(frames_with(lambda i, gt: gt if i < 12 else 3 - gt))
    assert scores.switches == 2
    assert scores.switches_per_100_frames == 10.0
    assert scores.right_identity_share == 0.6 and scores.idf1 == 0.6
    assert not scores.meets_ground_truth_targets()


def test_idf1_counts_unmatched_tracks_and_missed_people():
    frames = [FrameIdentities((1,), (7, 8), ((1, 7),)), FrameIdentities((1,), (), ())]
    scores = score_identities(frames)
    # IDTP 1, IDFP 1 (track 8), IDFN 1 (frame 2): 2·1 / (2·1 + 1 + 1)
    assert scores.idf1 == 0.5 and scores.right_identity_share == 0.5
    assert scores.right_identity_share_matched == 1.0 and scores.detection_recall == 0.5
    total = scores + scores
    assert total.idtp == 2 and total.frames == 4 and total.idf1 == 0.5


def test_ground_truth_detections_on_crossing_people_meet_the_targets():
    scores = evaluate_ground_truth(1, 150, 4, seed=0, noise=DetectionNoise())
    clean = scores["ground_truth"]
    assert clean.crossing_frames >= 10  # the people did cross
    assert clean.switches_per_100_frames <= 1.0 and clean.right_identity_share >= 0.95
    assert clean.meets_ground_truth_targets()
    noisy = scores["ground_truth_noisy"]
    assert noisy.gt_person_frames == clean.gt_person_frames > noisy.matched_person_frames


def test_model_persons_are_scored_by_box_iou():
    people = [{"track_id": 4, "bbox": [10, 10, 40, 80]}, {"track_id": 5, "bbox": [100, 10, 40, 80]}]
    keypoints = np.zeros((17, 3), np.float32)
    persons = [
        PersonPrediction((102, 12, 140, 90), 0.9, keypoints, "walking"),  # on person 5
        PersonPrediction((30, 10, 70, 90), 0.9, keypoints, "walking"),  # IoU 0.2 with person 4
    ]
    assert match_to_ground_truth(persons, people) == [5, None]
    assert match_to_ground_truth([], people) == []


class _BlindPipeline:
    model_version = "blind"

    def predict(self, images):
        return [[] for _ in images]


def test_model_mode_runs_the_pipeline_on_rendered_frames():
    scores = evaluate_model(_BlindPipeline(), 1, 6, 2, seed=0)
    assert isinstance(scores, IdentityScores)
    assert scores.frames == 6 and scores.gt_person_frames > 0
    assert scores.matched_person_frames == 0 and scores.idf1 == 0.0


def test_eval_tracks_command_writes_json_and_markdown(tmp_path):
    from workers.cli import app

    arguments = ["eval", "tracks", "--sequences", "1", "--frames", "30", "--people", "3", "--no-model"]
    result = CliRunner().invoke(app, [*arguments, "--out", str(tmp_path)])
    assert result.exit_code == 0, result.output
    report = json.loads((tmp_path / "eval_tracks.json").read_text())
    assert set(report["modes"]) == {"ground_truth", "ground_truth_noisy"}
    assert report["modes"]["ground_truth"]["frames"] == 30
    assert report["tracker"]["smoothing"] == "vote"
    markdown = (tmp_path / "eval_tracks.md").read_text()
    assert "switches / 100 frames" in markdown and "IDF1" in markdown
