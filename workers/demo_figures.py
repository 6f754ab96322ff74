"""What the demo summary scores and prints: persons matched to the synthetic sequence's truth (boxes,
activities, identities) and the summary's text. Pure functions of the demo's records."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Any

import numpy as np

from model.evaluation.identity_metrics import FrameIdentities, IdentityScores, score_identities
from schemas.wire import PersonEvent


def percentile(values: list[float], q: float) -> float | None:
    return round(float(np.percentile(np.asarray(values, dtype=np.float64), q)), 1) if values else None


@dataclass(frozen=True)
class TruthPerson:
    """One person of a synthetic frame as the sequence drew it."""

    box: tuple[float, float, float, float]  # x1, y1, x2, y2
    activity: str
    track_id: int | None = None  # the sequence's identity of the person


def iou(a: tuple[float, ...], b: tuple[float, ...]) -> float:
    inter_w = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    inter_h = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = inter_w * inter_h
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def match_pairs(
    truth: list[tuple[float, ...]], found: list[tuple[float, ...]], threshold: float = 0.5
) -> list[tuple[int, int]]:
    """(truth index, detection index) of the ground-truth boxes matched one-to-one (greedy, best IoU
    first) by a detection with IoU >= threshold."""
    pairs = sorted(
        ((iou(t, f), i, j) for i, t in enumerate(truth) for j, f in enumerate(found)), reverse=True
    )
    used_t: set[int] = set()
    used_f: set[int] = set()
    matched = []
    for overlap, i, j in pairs:
        if overlap < threshold:
            break
        if i not in used_t and j not in used_f:
            used_t.add(i)
            used_f.add(j)
            matched.append((i, j))
    return matched


def match_count(
    truth: list[tuple[float, ...]], found: list[tuple[float, ...]], threshold: float = 0.5
) -> int:
    """Ground-truth boxes matched one-to-one by a detection with IoU >= threshold (``match_pairs``)."""
    return len(match_pairs(truth, found, threshold))


def activity_pairs(
    truth: list[TruthPerson], events: list[PersonEvent], threshold: float = 0.5, *, smoothed: bool = False
) -> list[tuple[str, str]]:
    """(true activity, predicted activity) of each true person a detection matches (IoU >= threshold);
    ``smoothed``: the track's smoothed activity instead, for the persons whose event carries one."""
    pairs = match_pairs([t.box for t in truth], [tuple(e.bbox) for e in events], threshold)
    predicted = [(e.activity_smoothed if smoothed else e.activity) for e in events]
    return [(truth[i].activity, predicted[j]) for i, j in pairs if predicted[j]]


def frame_identities(truth: list[TruthPerson], events: list[PersonEvent]) -> FrameIdentities:
    """One frame's true identities, reported track ids and which went with which (box IoU >= 0.5)."""
    pairs = match_pairs([t.box for t in truth], [tuple(e.bbox) for e in events])
    return FrameIdentities(
        gt_ids=tuple(t.track_id for t in truth if t.track_id is not None),
        track_ids=tuple(e.track_id for e in events if e.track_id is not None),
        pairs=tuple(
            (truth[i].track_id, events[j].track_id)
            for i, j in pairs
            if truth[i].track_id is not None and events[j].track_id is not None
        ),
    )


def track_figures(identities: dict[str, list[FrameIdentities]], track_ids: set[tuple[str, int]]) -> dict:
    """Identity scores per camera (ids are per camera), summed; ``tracks_available`` False when no event
    carried a track id (tracking off)."""
    if not track_ids:
        return {"tracks_available": False}
    scores = sum((score_identities(frames) for frames in identities.values()), IdentityScores())
    figures: dict[str, Any] = {
        "tracks_available": True,
        "tracks": len(track_ids),
        "track_frames": scores.frames,
    }
    if scores.frames:
        figures.update(
            identity_switches=scores.switches,
            switches_per_100_frames=round(scores.switches_per_100_frames, 2),
            idf1=round(scores.idf1, 3),
            right_identity_share=round(scores.right_identity_share, 3),
        )
    return figures


def activity_figures(confusion: Counter[tuple[str, str]]) -> dict[str, Any]:
    """Activity against the ground truth over matched person-frames, from (true, predicted) counts: overall
    accuracy, per true class (persons, correct, accuracy = that class's recall) and the confusion counts."""
    total = sum(confusion.values())
    correct = sum(n for (truth, predicted), n in confusion.items() if truth == predicted)
    by_class: dict[str, dict[str, Any]] = {}
    matrix: dict[str, dict[str, int]] = {}
    for (truth, predicted), n in sorted(confusion.items()):
        row = by_class.setdefault(truth, {"persons": 0, "correct": 0})
        row["persons"] += n
        row["correct"] += n if truth == predicted else 0
        matrix.setdefault(truth, {})[predicted] = n
    for row in by_class.values():
        row["accuracy"] = round(row["correct"] / row["persons"], 3)
    return {
        "activity_matched": total,
        "activity_correct": correct,
        "activity_accuracy": round(correct / total, 3) if total else None,
        "activity_by_class": by_class,
        "activity_confusion": matrix,  # true activity -> predicted activity -> person-frames
    }


def _stale_note(summary: dict) -> str:
    """Why frames may be stale: the cameras' own bound (live frames older than it on arrival)."""
    max_age = summary.get("max_age_s")
    return f"  (live frames older than {max_age:g} s on arrival are stale)" if max_age else ""


def format_summary(summary: dict) -> str:
    lat, flat = summary["latency_ms"], summary["frame_latency_ms"]
    activities = ", ".join(f"{k} {v}" for k, v in summary["activities"].items()) or "none"
    lines = [
        "── posestream demo summary " + "─" * 40,
        f"frames published   {summary['frames_published']}  (dropped: {summary['frames_dropped']})",
        f"results            ok {summary['results_ok']}, stale {summary['results_stale']}"
        + _stale_note(summary),
        f"dead letters       {summary['dead_letters']} {summary['dead_reasons'] or ''}",
        f"balanced           {'yes' if summary['balanced'] else 'NO'}  (published == ok + stale + dead)",
        f"persons            {summary['persons']} in {summary['frames_with_persons']} frames "
        f"({summary['events']} events)",
        f"activities         {activities}",
        f"latency ms         p50 {lat['p50']}  p95 {lat['p95']}  "
        f"(per frame: p50 {flat['p50']}  p95 {flat['p95']})",
        f"throughput         {summary['frames_per_s']} frames/s over {summary['elapsed_s']} s",
        f"model              {summary['model']}",
        f"annotated frames   {summary['annotated_frames']} in {summary['out_dir']}",
    ]
    if summary["ground_truth_persons"]:
        lines.insert(
            -1,
            f"ground truth       {summary['ground_truth_found']} of {summary['ground_truth_persons']} "
            f"persons found (IoU >= 0.5, recall {summary['detection_recall']})",
        )
    lines.insert(-1, _tracks_line(summary))
    if summary.get("activity_matched"):
        per_class = ", ".join(
            f"{name} {row['correct']}/{row['persons']}" for name, row in summary["activity_by_class"].items()
        )
        lines.insert(
            -1,
            f"activity vs truth  {summary['activity_correct']} of {summary['activity_matched']} found "
            f"persons right (accuracy {summary['activity_accuracy']}; {per_class})",
        )
    if summary.get("smoothed_activity_matched"):
        lines.insert(
            -1,
            f"smoothed activity  {summary['smoothed_activity_correct']} of "
            f"{summary['smoothed_activity_matched']} right with each track's smoothed label "
            f"(accuracy {summary['smoothed_activity_accuracy']})",
        )
    if summary.get("view_url"):
        lines.append(f"live view          {summary['view_url']} (was up while the demo ran)")
    if summary.get("annotated_videos"):
        lines.append(f"annotated videos   {', '.join(summary['annotated_videos'])}")
    return "\n".join(lines)


def _tracks_line(summary: dict) -> str:
    if not summary.get("tracks_available"):
        return "tracks             unavailable (the events carry no track_id: tracking is off)"
    if "idf1" not in summary:
        return f"tracks             {summary['tracks']} track ids (no ground truth to score them against)"
    return (
        f"tracks             {summary['tracks']} track ids; {summary['identity_switches']} identity switches "
        f"over {summary['track_frames']} frames ({summary['switches_per_100_frames']} per 100 frames), "
        f"IDF1 {summary['idf1']}, right identity {summary['right_identity_share']}"
    )
