"""The demo summary's figures against the synthetic sequence's ground truth: which detections match which
true persons, and how often the matched persons' predicted activity is the true one. Hand-made frames,
no Ray, no model."""

from __future__ import annotations

from collections import Counter

import pytest
from stream_helpers import consumer_settings

from schemas.wire import FrameResult, PersonEvent
from workers.demo import (
    Collector,
    TruthPerson,
    activity_figures,
    activity_pairs,
    format_summary,
    summarise,
    synthetic_frames,
)


def event(
    frame_id: int,
    person: int,
    box: tuple[float, float, float, float],
    activity: str,
    track_id: int | None = None,
) -> PersonEvent:
    return PersonEvent(
        event_id=PersonEvent.make_id("cam", frame_id, person), camera_id="cam", frame_id=frame_id, ts=0.0,
        person=person, bbox=list(box), score=0.9, keypoints=[[0.0, 0.0, 0.0]] * 17, activity=activity,
        activity_scores={activity: 0.9}, model="test", width=200, height=100, latency_ms=1.0,
        track_id=track_id, activity_smoothed=activity if track_id is not None else None,
    )  # fmt: skip


def result(frame_id: int, events: list[PersonEvent], status: str = "ok") -> FrameResult:
    return FrameResult(
        camera_id="cam", frame_id=frame_id, ts=0.0, status=status, persons=len(events),
        event_ids=[e.event_id for e in events], width=200, height=100, latency_ms=1.0,
    )  # fmt: skip


WALKER = TruthPerson(box=(0, 0, 20, 50), activity="walking")
SITTER = TruthPerson(box=(100, 0, 130, 40), activity="sitting")
RUNNER = TruthPerson(box=(60, 0, 80, 50), activity="running")


def test_each_matched_truth_gets_the_activity_of_its_own_detection() -> None:
    truth = [WALKER, SITTER, RUNNER]
    events = [
        event(0, 0, (150, 50, 190, 90), "standing"),  # nobody there: matches nothing
        event(0, 1, (101, 1, 130, 41), "standing"),  # the sitter, wrong activity
        event(0, 2, (1, 0, 21, 50), "walking"),  # the walker, right
        event(0, 3, (0, 0, 22, 60), "running"),  # the walker again but worse: the better match wins
    ]  # the runner is missed
    assert sorted(activity_pairs(truth, events)) == [("sitting", "standing"), ("walking", "walking")]
    # A detection overlapping two truths is one person only; below IoU 0.5 nothing matches.
    assert activity_pairs([WALKER, WALKER], [event(0, 0, WALKER.box, "walking")]) == [("walking", "walking")]
    assert activity_pairs([WALKER], [event(0, 0, (10, 0, 30, 50), "walking")]) == []


def test_activity_figures_count_accuracy_per_true_class() -> None:
    confusion = Counter(
        {
            ("walking", "walking"): 3,
            ("walking", "running"): 1,
            ("sitting", "standing"): 2,
            ("sitting", "sitting"): 2,
        }
    )
    figures = activity_figures(confusion)
    assert figures["activity_matched"] == 8
    assert figures["activity_correct"] == 5
    assert figures["activity_accuracy"] == pytest.approx(5 / 8, abs=1e-3)
    assert figures["activity_by_class"] == {
        "sitting": {"persons": 4, "correct": 2, "accuracy": 0.5},
        "walking": {"persons": 4, "correct": 3, "accuracy": 0.75},
    }
    assert figures["activity_confusion"] == {
        "sitting": {"sitting": 2, "standing": 2},
        "walking": {"running": 1, "walking": 3},
    }
    empty = activity_figures(Counter())
    assert empty["activity_matched"] == 0 and empty["activity_accuracy"] is None
    assert empty["activity_by_class"] == {}


def test_the_collector_summary_reports_activity_accuracy_of_ok_frames(redis_url: str) -> None:
    collector = Collector(consumer_settings(redis_url), out_dir=None, echo=False)
    try:
        frames = {
            0: ([WALKER, SITTER], [event(0, 0, SITTER.box, "sitting"), event(0, 1, WALKER.box, "running")]),
            1: ([WALKER, RUNNER], [event(1, 0, RUNNER.box, "running")]),  # the walker is missed
            2: ([WALKER], [event(2, 0, WALKER.box, "standing")]),  # stale below: not counted
        }
        for frame_id, (truth, events) in frames.items():
            collector.keep("cam", frame_id, b"jpeg", truth)
            collector.events[("cam", frame_id)] = events
            finished = result(frame_id, events, status="stale" if frame_id == 2 else "ok")
            collector.results.append(finished)
            collector._finish_frame(finished)
    finally:
        collector.subscriber.close()
    summary = summarise(collector, published=3, dropped=0, started=0.0)
    assert summary["ground_truth_persons"] == 4 and summary["ground_truth_found"] == 3
    assert summary["activity_matched"] == 3 and summary["activity_correct"] == 2
    assert summary["activity_accuracy"] == pytest.approx(2 / 3, abs=1e-3)
    assert summary["activity_by_class"]["walking"] == {"persons": 1, "correct": 0, "accuracy": 0.0}
    assert summary["activity_confusion"]["walking"] == {"running": 1}
    text = format_summary(summary)
    assert "activity vs truth  2 of 3 found persons right (accuracy 0.667;" in text
    assert "running 1/1, sitting 1/1, walking 0/1" in text
    # these events carry no track_id: the summary says so instead of scoring identities
    assert summary["tracks_available"] is False and "idf1" not in summary
    assert "tracks             unavailable (the events carry no track_id: tracking is off)" in text


TRACKED_WALKER = TruthPerson(box=WALKER.box, activity="walking", track_id=1)
TRACKED_SITTER = TruthPerson(box=SITTER.box, activity="sitting", track_id=2)


def test_the_summary_scores_identities_from_the_events_track_ids(redis_url: str, tmp_path) -> None:
    import cv2
    import numpy as np

    collector = Collector(consumer_settings(redis_url), out_dir=tmp_path, echo=False, fps=5.0)
    walker_tracks = [5, 5, 7, 7]  # the walker's track changes once: one identity switch
    try:
        for frame_id, walker_track in enumerate(walker_tracks):
            events = [
                event(frame_id, 0, WALKER.box, "walking", track_id=walker_track),
                event(frame_id, 1, SITTER.box, "sitting", track_id=6),
            ]
            if frame_id == 3:  # a track on nobody: counts against IDF1, not as a switch
                events.append(event(frame_id, 2, (150, 50, 190, 90), "standing", track_id=9))
            collector.keep(
                "cam", frame_id, np.zeros((100, 200, 3), np.uint8), [TRACKED_WALKER, TRACKED_SITTER]
            )
            collector.events[("cam", frame_id)] = events
            finished = result(frame_id, events)
            collector.results.append(finished)
            collector._finish_frame(finished)
    finally:
        collector.subscriber.close()
        collector.close_videos()
    summary = summarise(collector, published=4, dropped=0, started=0.0)
    assert summary["tracks_available"] is True and summary["tracks"] == 4  # 5, 6, 7, 9
    assert summary["track_frames"] == 4 and summary["identity_switches"] == 1
    assert summary["switches_per_100_frames"] == pytest.approx(25.0)
    # best pairing: sitter↔6 (4 frames), walker↔5 or ↔7 (2): 6 right of 8 true person-frames, 9 reported
    assert summary["right_identity_share"] == pytest.approx(0.75)
    assert summary["idf1"] == pytest.approx(round(2 * 6 / (8 + 9), 3))
    text = format_summary(summary)
    assert "tracks             4 track ids; 1 identity switches over 4 frames (25.0 per 100 frames), " in text
    assert "IDF1 0.706, right identity 0.75" in text
    # each camera's annotated frames also as a WebM that plays them all, drawn with the track colours
    assert summary["annotated_videos"] == [str(tmp_path / "cam.webm")]
    capture = cv2.VideoCapture(str(tmp_path / "cam.webm"))
    frames = 0
    while capture.read()[0]:
        frames += 1
    assert frames == 4 and capture.get(cv2.CAP_PROP_FRAME_WIDTH) == 200
    assert sorted(p.name for p in (tmp_path / "cam").iterdir()) == [f"{i}.jpg" for i in range(4)]
    assert "annotated videos   " + str(tmp_path / "cam.webm") in text


def test_the_synthetic_frames_carry_each_persons_activity() -> None:
    _frame, truth = next(synthetic_frames(frames=1, people=3, seed=0, size=(160, 160)))
    assert truth and all(isinstance(t, TruthPerson) for t in truth)
    assert {t.activity for t in truth} <= {"walking", "running", "sitting", "standing"}
    assert all(t.box[0] < t.box[2] and t.box[1] < t.box[3] for t in truth)
    assert sorted(t.track_id for t in truth) == list(range(1, len(truth) + 1))  # the sequence's identities
