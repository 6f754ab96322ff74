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


def event(frame_id: int, person: int, box: tuple[float, float, float, float], activity: str) -> PersonEvent:
    return PersonEvent(
        event_id=PersonEvent.make_id("cam", frame_id, person), camera_id="cam", frame_id=frame_id, ts=0.0,
        person=person, bbox=list(box), score=0.9, keypoints=[[0.0, 0.0, 0.0]] * 17, activity=activity,
        activity_scores={activity: 0.9}, model="test", width=200, height=100, latency_ms=1.0,
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


def test_the_synthetic_frames_carry_each_persons_activity() -> None:
    _frame, truth = next(synthetic_frames(frames=1, people=3, seed=0, size=(160, 160)))
    assert truth and all(isinstance(t, TruthPerson) for t in truth)
    assert {t.activity for t in truth} <= {"walking", "running", "sitting", "standing"}
    assert all(t.box[0] < t.box[2] and t.box[1] < t.box[3] for t in truth)
