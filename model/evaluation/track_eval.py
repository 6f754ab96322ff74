"""Tracking evaluation on generated sequences of people crossing each other (``posestream eval tracks``).

Sequences come from ``model.data.sequence.iter_sequence_frames(..., crossing=True)``: everyone walks or
runs back and forth along one ground line, turning before the frame edge, so they pass in front of one
another and stay in view (a person who leaves and comes back would need appearance re-identification,
which this tracker does not do). Three modes feed the tracker (``model.tracking``):

* ``ground_truth``: the ground-truth boxes and keypoints as detections (the tracker's logic alone);
* ``ground_truth_noisy``: the same, jittered (box edges and joints by a share of the box height) and
  with detections dropped at random (``DetectionNoise``);
* ``model``: the pipeline on the rendered frames (end to end); its persons are matched to the ground
  truth of their frame by box IoU ≥ 0.5 (Hungarian) for scoring only.

People with fewer than ``MIN_TRACKABLE_JOINTS`` joints inside the frame (slivers at an edge) are neither
fed nor scored, nor are model persons matched to them. Scores: ``identity_metrics.IdentityScores``
(switches per 100 frames, IDF1, right-identity share).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import structlog
from scipy.optimize import linear_sum_assignment

from model.data.sequence import iter_sequence_frames
from model.evaluation.identity_metrics import (
    TARGET_RIGHT_SHARE,
    TARGET_SWITCHES_PER_100,
    FrameIdentities,
    IdentityScores,
    score_identities,
)
from model.predictions import PersonPrediction
from model.tracking import TrackerConfig, TrackerState, box_iou, update

log = structlog.get_logger()

MATCH_IOU = 0.5  # a model person scores as a ground-truth person from this box IoU
CROSSING_IOU = 0.3  # two ground-truth boxes overlapping this much: the frame has a crossing
MIN_TRACKABLE_JOINTS = 6  # fewer joints inside the frame: a sliver at the edge, neither fed nor scored


@dataclass(frozen=True)
class DetectionNoise:
    """How ground-truth detections are spoiled in the ``ground_truth_noisy`` mode."""

    box_jitter: float = 0.03  # σ of each box edge, share of the box height
    keypoint_jitter: float = 0.02  # σ of each joint, share of the box height
    drop_rate: float = 0.05  # share of person-frames with no detection


def gt_boxes(people: Sequence[dict]) -> np.ndarray:
    """Ground-truth x, y, w, h boxes → (N, 4) x1, y1, x2, y2."""
    boxes = np.array([person["bbox"] for person in people], np.float64).reshape(-1, 4)
    boxes[:, 2:] += boxes[:, :2]
    return boxes


def has_crossing(people: Sequence[dict]) -> bool:
    if len(people) < 2:
        return False
    iou = box_iou(gt_boxes(people), gt_boxes(people))
    np.fill_diagonal(iou, 0.0)
    return bool((iou >= CROSSING_IOU).any())


def is_trackable(person: dict) -> bool:
    """At least MIN_TRACKABLE_JOINTS joints inside the frame (about a third of the body)."""
    return sum(1 for joint in person["keypoints"] if joint[2] > 0) >= MIN_TRACKABLE_JOINTS


def ground_truth_detections(
    people: Sequence[dict], rng: np.random.Generator | None = None, noise: DetectionNoise | None = None
) -> tuple[list[PersonPrediction], list[int]]:
    """A frame's trackable ground truth as detections (optionally spoiled) and the id of each."""
    detections, ids = [], []
    for person, box in zip(people, gt_boxes(people), strict=True):
        if not is_trackable(person):
            continue
        keypoints = np.array(person["keypoints"], np.float32).reshape(17, 3)
        keypoints[:, 2] = (keypoints[:, 2] > 0).astype(np.float32)  # v ∈ {1, 2} → found
        if noise is not None and rng is not None:
            if rng.random() < noise.drop_rate:
                continue
            height = box[3] - box[1]
            box = box + rng.normal(0.0, noise.box_jitter * height, 4)
            keypoints[:, :2] += rng.normal(0.0, noise.keypoint_jitter * height, (17, 2)).astype(np.float32)
            if not (box[2] > box[0] and box[3] > box[1]):
                continue
        bbox = (float(box[0]), float(box[1]), float(box[2]), float(box[3]))
        activity = str(person["activity"])
        detections.append(PersonPrediction(bbox, 1.0, keypoints, activity, {activity: 1.0}))
        ids.append(int(person["track_id"]))
    return detections, ids


def track_sequence(
    gt_frames: Sequence[Sequence[dict]],
    detect: Callable[[int, Sequence[dict]], tuple[list[PersonPrediction], list[int | None]]],
    config: TrackerConfig,
) -> list[FrameIdentities]:
    """Run the tracker over a sequence; ``detect(frame index, ground truth)`` → detections and the
    ground-truth id each stands for (None: matches nobody). Persons that are not ``is_trackable`` are
    not scored, nor are the detections matched to them."""
    state = TrackerState()
    result = []
    for index, people in enumerate(gt_frames):
        detections, ids = detect(index, people)
        state, tracked = update(state, index, detections, config)
        scored = {int(person["track_id"]) for person in people if is_trackable(person)}
        ignored = {int(person["track_id"]) for person in people} - scored
        kept = [(gt, person.track_id) for gt, person in zip(ids, tracked, strict=True) if gt not in ignored]
        result.append(
            FrameIdentities(
                gt_ids=tuple(sorted(scored)),
                track_ids=tuple(track for _, track in kept),
                pairs=tuple((gt, track) for gt, track in kept if gt is not None),
                crossing=has_crossing(people),
            )
        )
    return result


def match_to_ground_truth(persons: Sequence[PersonPrediction], people: Sequence[dict]) -> list[int | None]:
    """The ground-truth id of each predicted person (box IoU ≥ MATCH_IOU, one-to-one), else None."""
    if not persons or not people:
        return [None] * len(persons)
    iou = box_iou(np.array([p.bbox for p in persons], np.float64), gt_boxes(people))
    rows, cols = linear_sum_assignment(iou, maximize=True)
    ids: list[int | None] = [None] * len(persons)
    for row, col in zip(rows, cols, strict=True):
        if iou[row, col] >= MATCH_IOU:
            ids[row] = int(people[col]["track_id"])
    return ids


def _sequence_seed(seed: int, index: int) -> int:
    return int(np.random.SeedSequence([seed, 0x7AC, index]).generate_state(1)[0])


def evaluate_ground_truth(
    sequences: int,
    frames: int,
    people: int,
    seed: int,
    config: TrackerConfig | None = None,
    noise: DetectionNoise | None = None,
) -> dict[str, IdentityScores]:
    """``ground_truth`` and (with ``noise``) ``ground_truth_noisy`` scores, summed over sequences."""
    config = config or TrackerConfig()
    totals = {"ground_truth": IdentityScores()} | ({"ground_truth_noisy": IdentityScores()} if noise else {})
    for index in range(sequences):
        sequence_seed = _sequence_seed(seed, index)
        gt_frames = [
            truth["people"] for _, truth in iter_sequence_frames(frames, people, sequence_seed, crossing=True)
        ]
        clean = track_sequence(gt_frames, lambda _, truth: ground_truth_detections(truth), config)
        totals["ground_truth"] += score_identities(clean)
        if noise is not None:
            rng = np.random.default_rng([sequence_seed, 0x401])
            noisy = track_sequence(
                gt_frames, lambda _, truth, rng=rng: ground_truth_detections(truth, rng, noise), config
            )
            totals["ground_truth_noisy"] += score_identities(noisy)
    return totals


def evaluate_model(
    pipeline: Any,
    sequences: int,
    frames: int,
    people: int,
    seed: int,
    config: TrackerConfig | None = None,
    batch_size: int = 8,
) -> IdentityScores:
    """End to end: ``pipeline.predict`` (a ``PosePipeline``) on the rendered frames, then the tracker."""
    config = config or TrackerConfig()
    total = IdentityScores()
    for index in range(sequences):
        images, gt_frames = [], []
        for image, truth in iter_sequence_frames(frames, people, _sequence_seed(seed, index), crossing=True):
            images.append(image)
            gt_frames.append(truth["people"])
        predictions: list[list[PersonPrediction]] = []
        for start in range(0, len(images), batch_size):
            predictions += pipeline.predict(images[start : start + batch_size])
        log.info("model predictions done", sequence=index, frames=len(images))
        total += score_identities(
            track_sequence(
                gt_frames,
                lambda i, truth, found=predictions: (found[i], match_to_ground_truth(found[i], truth)),
                config,
            )
        )
    return total


@dataclass(frozen=True)
class TrackEvalReport:
    settings: dict[str, Any]
    tracker: dict[str, Any] = field(default_factory=dict)  # the TrackerConfig used
    scores: dict[str, IdentityScores] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        ground_truth = self.scores.get("ground_truth")
        return {
            "settings": dict(self.settings),
            "tracker": dict(self.tracker),
            "targets": {
                "switches_per_100_frames_max": TARGET_SWITCHES_PER_100,
                "right_identity_share_min": TARGET_RIGHT_SHARE,
                "ground_truth_meets_targets": None
                if ground_truth is None
                else ground_truth.meets_ground_truth_targets(),
            },
            "modes": {mode: scores.as_dict() for mode, scores in self.scores.items()},
        }

    def with_scores(self, mode: str, scores: IdentityScores) -> TrackEvalReport:
        return replace(self, scores={**self.scores, mode: scores})

    def markdown(self) -> str:
        from model.evaluation.report import markdown_table

        rows = [
            [
                mode,
                scores.frames,
                scores.crossing_frames,
                scores.gt_identities,
                scores.track_identities,
                scores.switches,
                scores.switches_per_100_frames,
                scores.idf1,
                scores.right_identity_share,
                scores.right_identity_share_matched,
                scores.detection_recall,
            ]
            for mode, scores in self.scores.items()
        ]
        settings = ", ".join(f"{key} {value}" for key, value in self.settings.items())
        verdict = self.as_dict()["targets"]["ground_truth_meets_targets"]
        verdict_text = {True: "met", False: "NOT met", None: "–"}[verdict]
        return "\n".join(
            [
                "# posestream tracking evaluation",
                "",
                f"Generated crossing sequences: {settings}.",
                "",
                markdown_table(
                    [
                        "mode",
                        "frames",
                        "crossing frames",
                        "GT ids",
                        "track ids",
                        "switches",
                        "switches / 100 frames",
                        "IDF1",
                        "right identity",
                        "right identity (matched)",
                        "detection recall",
                    ],
                    rows,
                ),
                "",
                f"Targets with ground-truth detections: ≤ {TARGET_SWITCHES_PER_100} switch / 100 frames and "
                f"≥ {TARGET_RIGHT_SHARE} right identity: {verdict_text}.",
                "",
            ]
        )


def evaluate_tracks(
    sequences: int,
    frames: int,
    people: int,
    seed: int,
    config: TrackerConfig | None = None,
    noise: DetectionNoise | None = DetectionNoise(),
    pipeline: Any = None,
    model_sequences: int = 1,
    model_frames: int = 150,
) -> TrackEvalReport:
    """Ground-truth modes on ``sequences`` × ``frames``; with a ``pipeline``, the model mode on the
    first ``model_sequences`` × ``model_frames`` of the same sequences (it renders and infers)."""
    if sequences < 1 or frames < 2 or people < 1:
        raise ValueError(f"need sequences ≥ 1, frames ≥ 2, people ≥ 1; got {sequences}, {frames}, {people}")
    config = config or TrackerConfig()
    settings: dict[str, Any] = {"sequences": sequences, "frames": frames, "people": people, "seed": seed}
    if noise is not None:
        settings["noise"] = asdict(noise)
    report = TrackEvalReport(settings, config.model_dump())
    for mode, scores in evaluate_ground_truth(sequences, frames, people, seed, config, noise).items():
        report = report.with_scores(mode, scores)
    if pipeline is not None:
        if model_sequences < 1 or model_frames < 2:
            raise ValueError(
                f"need model sequences ≥ 1 and frames ≥ 2, got {model_sequences}, {model_frames}"
            )
        settings.update(
            model_sequences=model_sequences,
            model_frames=model_frames,
            model_version=str(getattr(pipeline, "model_version", "")),
        )
        scores = evaluate_model(pipeline, model_sequences, model_frames, people, seed, config)
        report = report.with_scores("model", scores)
    return report


def write_track_report(report: TrackEvalReport, out_dir: str | Path) -> tuple[Path, Path]:
    """``OUT/eval_tracks.json`` and ``OUT/eval_tracks.md``."""
    from model.evaluation.report import write_json

    out_dir = Path(out_dir)
    json_path = write_json(report.as_dict(), out_dir / "eval_tracks.json")
    md_path = out_dir / "eval_tracks.md"
    md_path.write_text(report.markdown())
    return json_path, md_path
