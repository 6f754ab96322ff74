"""Per-camera person tracking: a ``track_id`` per person across frames (numpy + scipy, no torch/Redis).

Each track carries a constant-velocity Kalman filter over its box (centre x/y, width, height and their
velocities, noise scaled by the box height as in DeepSORT) and the keypoints of its last match. A person's
box is their detected box joined with their found joints (``person_box``), so someone half hidden behind
another person keeps a body-sized box while their joints are found. A frame's
detections are matched to the predicted tracks by a similarity that mixes box IoU and OKS (the last
keypoints moved by the predicted displacement, COCO sigmas): pairs below ``min_similarity`` never match,
and ``scipy.optimize.linear_sum_assignment`` maximises the summed margin ``similarity - min_similarity``.
Unmatched detections open new tracks; a track survives ``max_missed_frames`` frames without a match.

The state is a value: ``update`` and ``mark_missed`` return a new ``TrackerState`` and never change the
one given. Frame ids are a camera's frame indices and must not go backwards:

* ``frame_id == last_frame_id``: a redelivery. Nothing moves; ``update`` returns the same state and the
  ``TrackedPerson`` list it returned the first time (it must carry as many persons, else ValueError;
  a frame first applied by ``mark_missed`` answered no persons).
* ``frame_id < last_frame_id``: ``FrameOrderError`` (a ValueError): the caller drops the frame as stale.
* ``frame_id > last_frame_id + 1``: the frames in between were never seen; they count as missed frames
  (unless the caller says how many frames passed: ``steps``).

``mark_missed`` is a frame dropped unseen (e.g. stale): every track ages by one missed frame. Per-track
activity smoothing: ``model.activity_smoothing`` (``TrackerConfig.smoothing``).
``TrackerState.to_bytes`` / ``from_bytes`` (msgpack, format ``STATE_VERSION``) store it between frames.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

import numpy as np
from scipy.optimize import linear_sum_assignment

from model.activity_smoothing import SmoothedActivity
from model.predictions import NUM_KEYPOINTS, PersonPrediction
from model.track_state import (
    MIN_SIDE,
    STATE_SIZE,
    STATE_VERSION,
    FrameOrderError,
    Track,
    TrackedPerson,
    TrackerConfig,
    TrackerState,
)

__all__ = [
    "STATE_VERSION",
    "FrameOrderError",
    "TrackedPerson",
    "TrackerConfig",
    "TrackerState",
    "box_iou",
    "keypoint_similarity",
    "mark_missed",
    "person_box",
    "update",
]

# COCO's per-joint OKS sigmas (= coco_eval.COCO_KEYPOINT_SIGMAS, which imports torch; this module must not)
OKS_SIGMAS = (
    np.array(
        [0.26, 0.25, 0.25, 0.35, 0.35, 0.79, 0.79, 0.72, 0.72, 0.62, 0.62, 1.07, 1.07, 0.87, 0.87, 0.89, 0.89]
    )
    / 10.0
)
_OKS_K2 = (2.0 * OKS_SIGMAS) ** 2
MEASURE = np.eye(4, STATE_SIZE)  # the Kalman state's observed part: cx, cy, w, h


def box_iou(boxes_a: np.ndarray, boxes_b: np.ndarray) -> np.ndarray:
    """(A, 4) × (B, 4) x1, y1, x2, y2 boxes → (A, B) IoU."""
    a, b = boxes_a[:, None, :], boxes_b[None, :, :]
    width = np.clip(np.minimum(a[..., 2], b[..., 2]) - np.maximum(a[..., 0], b[..., 0]), 0, None)
    height = np.clip(np.minimum(a[..., 3], b[..., 3]) - np.maximum(a[..., 1], b[..., 1]), 0, None)
    inter = width * height
    area_a = (a[..., 2] - a[..., 0]) * (a[..., 3] - a[..., 1])
    area_b = (b[..., 2] - b[..., 0]) * (b[..., 3] - b[..., 1])
    return inter / np.maximum(area_a + area_b - inter, 1e-9)


def keypoint_similarity(
    expected: np.ndarray, detected: np.ndarray, area: float, min_score: float
) -> float | None:
    """COCO OKS of two (17, 3) keypoint sets over the joints both have; None when they share none."""
    both = (expected[:, 2] >= min_score) & (detected[:, 2] >= min_score)
    if not both.any():
        return None
    squared = ((expected[both, :2] - detected[both, :2]) ** 2).sum(axis=1)
    return float(np.exp(-squared / (2.0 * max(area, 1.0) * _OKS_K2[both])).mean())


def person_box(person: PersonPrediction, config: TrackerConfig) -> np.ndarray:
    """The person's box (x1, y1, x2, y2) joined with their found joints: the box of someone half
    hidden behind another person shrinks to the part in view, their joints mostly do not."""
    x1, y1, x2, y2 = (float(v) for v in person.bbox)
    if not (x2 > x1 and y2 > y1):
        raise ValueError(f"person box must be x1, y1, x2, y2 with x2 > x1 and y2 > y1, got {person.bbox}")
    keypoints = np.asarray(person.keypoints, np.float64).reshape(NUM_KEYPOINTS, 3)
    found = keypoints[keypoints[:, 2] >= config.keypoint_min_score, :2]
    if len(found):
        x1, y1 = min(x1, float(found[:, 0].min())), min(y1, float(found[:, 1].min()))
        x2, y2 = max(x2, float(found[:, 0].max())), max(y2, float(found[:, 1].max()))
    return np.array([x1, y1, x2, y2])


def _measurement(box: np.ndarray) -> np.ndarray:
    return np.array([(box[0] + box[2]) / 2, (box[1] + box[3]) / 2, box[2] - box[0], box[3] - box[1]])


def _predict(track: Track, steps: int, config: TrackerConfig) -> Track:
    """The track ``steps`` frames later by constant velocity; the frames in between count as missed."""
    motion = np.eye(STATE_SIZE)
    motion[:4, 4:] = steps * np.eye(4)
    height = max(track.mean[3], MIN_SIDE)
    noise = np.array([config.position_noise] * 4 + [config.velocity_noise] * 4) * height
    mean = motion @ track.mean
    covariance = motion @ track.covariance @ motion.T + np.diag(noise**2) * steps
    return replace(track, mean=mean, covariance=covariance, missed=track.missed + steps - 1)


def _correct(track: Track, measured: np.ndarray, config: TrackerConfig) -> tuple[np.ndarray, np.ndarray]:
    # scaled by the track's height, not the measurement's: a box shrunk to the sliver left visible
    # behind someone must not be trusted more than the person's usual box
    height = max(track.mean[3], measured[3], MIN_SIDE)
    noise = np.diag((config.measurement_noise * height * np.ones(4)) ** 2)
    innovation_cov = MEASURE @ track.covariance @ MEASURE.T + noise
    gain = np.linalg.solve(innovation_cov, MEASURE @ track.covariance).T
    mean = track.mean + gain @ (measured - MEASURE @ track.mean)
    covariance = (np.eye(STATE_SIZE) - gain @ MEASURE) @ track.covariance
    return mean, (covariance + covariance.T) / 2


def _similarity(
    tracks: Sequence[Track],
    persons: Sequence[PersonPrediction],
    detected_boxes: np.ndarray,
    config: TrackerConfig,
) -> np.ndarray:
    """(T, D) weighted IoU/OKS similarity of predicted tracks and detections (``person_box`` boxes)."""
    track_boxes = np.stack([track.box() for track in tracks])
    iou = box_iou(track_boxes, detected_boxes)
    similarity = np.empty_like(iou)
    for t, track in enumerate(tracks):
        shift = track.mean[:2] - np.asarray(track.matched_center)
        expected = track.keypoints.copy()
        expected[:, :2] += shift
        track_area = float(np.prod(track_boxes[t, 2:] - track_boxes[t, :2]))
        for d, person in enumerate(persons):
            box = detected_boxes[d]
            detected = np.asarray(person.keypoints, np.float64).reshape(NUM_KEYPOINTS, 3)
            # OKS scale: the largest of the boxes and the joints' extent, so a person cut by the frame
            # edge or by someone in front is still judged at their full size
            area = max(track_area, (box[2] - box[0]) * (box[3] - box[1]), _extent_area(detected, config))
            oks = keypoint_similarity(expected, detected, area, config.keypoint_min_score)
            if oks is None or config.oks_weight == 0:  # no joints in common: the box alone decides
                similarity[t, d] = iou[t, d] if config.iou_weight > 0 else 0.0
            else:
                total = config.iou_weight + config.oks_weight
                similarity[t, d] = (config.iou_weight * iou[t, d] + config.oks_weight * oks) / total
    return similarity


def _extent_area(keypoints: np.ndarray, config: TrackerConfig) -> float:
    found = keypoints[keypoints[:, 2] >= config.keypoint_min_score, :2]
    if len(found) < 2:
        return 0.0
    return float(np.prod(found.max(axis=0) - found.min(axis=0)))


def _match(similarity: np.ndarray, min_similarity: float) -> dict[int, int]:
    """Detection index → track index, maximising the summed margin over the gate."""
    if similarity.size == 0:
        return {}
    margin = np.where(similarity >= min_similarity, similarity - min_similarity + 1e-9, 0.0)
    rows, cols = linear_sum_assignment(margin, maximize=True)
    return {int(d): int(t) for t, d in zip(rows, cols, strict=True) if margin[t, d] > 0}


def _check_frame_id(state: TrackerState, frame_id: int) -> int:
    if isinstance(frame_id, bool) or not isinstance(frame_id, int | np.integer):
        raise ValueError(f"frame_id must be an int frame index, got {frame_id!r}")
    frame_id = int(frame_id)
    if state.last_frame_id is not None and frame_id < state.last_frame_id:
        raise FrameOrderError(
            f"frame {frame_id} is older than the last frame applied ({state.last_frame_id})"
        )
    return frame_id


def _steps_since(state: TrackerState, frame_id: int, steps: int | None) -> int:
    if steps is not None:
        if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
            raise ValueError(f"steps must be an int >= 1, got {steps!r}")
        return steps
    return 1 if state.last_frame_id is None else frame_id - state.last_frame_id


def update(
    state: TrackerState,
    frame_id: int,
    persons: Sequence[PersonPrediction],
    config: TrackerConfig,
    *,
    steps: int | None = None,
) -> tuple[TrackerState, list[TrackedPerson]]:
    """Apply one frame's detections; returns the new state and one ``TrackedPerson`` per person.

    ``steps``: frames since the last one applied, when frame ids are not frame indices (the stream worker's
    ids are capture times in µs: it counts one step per frame it sees); default ``frame_id - last``."""
    frame_id = _check_frame_id(state, frame_id)
    if frame_id == state.last_frame_id:
        if len(persons) != len(state.last_output):
            raise ValueError(
                f"frame {frame_id} was applied with {len(state.last_output)} persons, "
                f"redelivered with {len(persons)}"
            )
        return state, list(state.last_output)
    smoother = config.smoother()
    steps = _steps_since(state, frame_id, steps)
    predicted = [_predict(track, steps, config) for track in state.tracks]
    predicted = [track for track in predicted if track.missed <= config.max_missed_frames]
    boxes = np.array([person_box(person, config) for person in persons], np.float64).reshape(-1, 4)
    matches = (
        _match(_similarity(predicted, persons, boxes, config), config.min_similarity)
        if predicted and persons
        else {}
    )
    next_id = state.next_track_id
    kept: list[Track] = []
    outputs: list[TrackedPerson] = []
    matched_tracks = set(matches.values())
    for d, person in enumerate(persons):
        measured = _measurement(boxes[d])
        keypoints = np.asarray(person.keypoints, np.float64).reshape(NUM_KEYPOINTS, 3).copy()
        if d in matches:
            previous = predicted[matches[d]]
            mean, covariance = _correct(previous, measured, config)
            activity = smoother.step(previous.activity, person.activity, person.activity_scores)
            track = replace(
                previous,
                mean=mean,
                covariance=covariance,
                keypoints=keypoints,
                matched_center=(float(measured[0]), float(measured[1])),
                hits=previous.hits + 1,
                missed=0,
                activity=activity,
            )
            changed = previous.activity.label if activity.label != previous.activity.label else None
        else:
            track = _new_track(next_id, measured, keypoints, config)
            track = replace(
                track, activity=smoother.step(SmoothedActivity(), person.activity, person.activity_scores)
            )
            next_id, changed = next_id + 1, None
        kept.append(track)
        outputs.append(
            TrackedPerson(
                track_id=track.track_id,
                activity_smoothed=track.activity.label,
                activity_scores_smoothed=track.activity.scores_dict(),
                activity_changed_from=changed or None,
                new_track=d not in matches,
            )
        )
    for t, track in enumerate(predicted):
        if t not in matched_tracks and track.missed + 1 <= config.max_missed_frames:
            kept.append(replace(track, missed=track.missed + 1))
    new_state = TrackerState(
        tracks=tuple(sorted(kept, key=lambda track: track.track_id)),
        next_track_id=next_id,
        last_frame_id=frame_id,
        last_output=tuple(outputs),
    )
    return new_state, outputs


def mark_missed(
    state: TrackerState, frame_id: int, config: TrackerConfig, *, steps: int | None = None
) -> TrackerState:
    """A frame dropped unseen (stale): every track ages by a missed frame. Idempotent per frame_id."""
    frame_id = _check_frame_id(state, frame_id)
    if frame_id == state.last_frame_id:
        return state
    steps = _steps_since(state, frame_id, steps)
    aged = [
        replace(track, missed=track.missed + 1)
        for track in (_predict(t, steps, config) for t in state.tracks)
    ]
    return TrackerState(
        tracks=tuple(track for track in aged if track.missed <= config.max_missed_frames),
        next_track_id=state.next_track_id,
        last_frame_id=frame_id,
        last_output=(),
    )


def _new_track(track_id: int, measured: np.ndarray, keypoints: np.ndarray, config: TrackerConfig) -> Track:
    height = measured[3]
    spread = np.array([2 * config.position_noise] * 4 + [10 * config.velocity_noise] * 4) * height
    return Track(
        track_id=track_id,
        mean=np.concatenate([measured, np.zeros(4)]),
        covariance=np.diag(spread**2),
        keypoints=keypoints,
        matched_center=(float(measured[0]), float(measured[1])),
        hits=1,
        missed=0,
        activity=SmoothedActivity(),
    )
