"""Labelled poses for the activity study: still frames and windows of a track's frames.

Still frames come from a poses file (``posestream data poses``), the ground truth of a COCO-format set
with ``activity`` labels, or, with neither, from scenes drawn in memory exactly as ``posestream data synth``
draws them (``render_example``: the ground-truth poses the demo recipe cross-validates on). Windows come
from generated sequences (``iter_sequence_frames``): the sequence module only hands out poses of rendered
frames, and rendering is what decides which joints are seen (people cross and hide one another), so the
frames are drawn (about 20 ms a 480 px frame) and the images dropped.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import structlog

from model.data.skeleton import DEFAULT_ACTIVITIES, NUM_KEYPOINTS

log = structlog.get_logger()

STILL, SEQUENCE = "still", "sequence"


@dataclass(frozen=True)
class PoseSamples:
    """N labelled samples of W frames each (W = 1 for still frames), the labelled frame last."""

    keypoints: np.ndarray  # (N, W, 17, 3) x, y, score (> 0 = found), float32
    boxes: np.ndarray  # (N, W, 4) x1, y1, x2, y2, float32
    labels: np.ndarray  # (N,) int64 index into activities: the activity of the last frame
    activities: tuple[str, ...]
    kind: str  # STILL or SEQUENCE
    groups: np.ndarray  # (N,) int64: samples of one group share a fold (a sequence); still: one each
    track_ids: np.ndarray  # (N,) int64 track of the window (still: -1)
    frame_indices: np.ndarray  # (N, W) int64 frame of each window entry (still: 0)

    def __post_init__(self) -> None:
        count = len(self.labels)
        if count == 0:
            raise ValueError("no labelled pose")
        if (
            self.keypoints.ndim != 4
            or self.keypoints.shape[0] != count
            or self.keypoints.shape[2:]
            != (
                NUM_KEYPOINTS,
                3,
            )
        ):
            raise ValueError(f"keypoints must be (N, W, 17, 3) with N = {count}, got {self.keypoints.shape}")
        window = self.keypoints.shape[1]
        expected = {
            "boxes": (count, window, 4),
            "groups": (count,),
            "track_ids": (count,),
            "frame_indices": (count, window),
        }
        for name, shape in expected.items():
            if getattr(self, name).shape != shape:
                raise ValueError(f"{name} must be {shape}, got {getattr(self, name).shape}")
        if self.kind not in (STILL, SEQUENCE):
            raise ValueError(f"kind must be {STILL!r} or {SEQUENCE!r}, got {self.kind!r}")
        if self.labels.min() < 0 or self.labels.max() >= len(self.activities):
            raise ValueError(f"labels must index the {len(self.activities)} activities")

    @property
    def window(self) -> int:
        return self.keypoints.shape[1]

    def __len__(self) -> int:
        return len(self.labels)

    def class_counts(self) -> dict[str, int]:
        counts = np.bincount(self.labels, minlength=len(self.activities))
        return {activity: int(c) for activity, c in zip(self.activities, counts, strict=True)}


def still_samples(
    keypoints: np.ndarray, boxes: np.ndarray, activity_names: list[str], activities: tuple[str, ...]
) -> PoseSamples:
    """keypoints (N, 17, 3), boxes (N, 4) x1 y1 x2 y2 and their activity names → one-frame samples."""
    unknown = sorted(set(activity_names) - set(activities))
    if unknown:
        raise ValueError(f"activity labels {unknown} are not among the activities {activities}")
    count = len(activity_names)
    return PoseSamples(
        keypoints=np.asarray(keypoints, np.float32).reshape(count, 1, NUM_KEYPOINTS, 3),
        boxes=np.asarray(boxes, np.float32).reshape(count, 1, 4),
        labels=np.array([activities.index(name) for name in activity_names], np.int64),
        activities=activities,
        kind=STILL,
        groups=np.arange(count, dtype=np.int64),
        track_ids=np.full(count, -1, np.int64),
        frame_indices=np.zeros((count, 1), np.int64),
    )


def generated_still_samples(
    images: int = 1000,
    seed: int = 0,
    size: tuple[int, int] = (480, 480),
    max_people: int = 8,
    activities: tuple[str, ...] = DEFAULT_ACTIVITIES,
) -> PoseSamples:
    """Ground-truth poses of ``images`` scenes drawn as ``posestream data synth --seed SEED`` draws them."""
    from model.data.synth import render_example

    if images < 1:
        raise ValueError(f"images must be positive, got {images}")
    keypoints, boxes, names = [], [], []
    for index in range(images):
        _, truths = render_example(seed, index, size[0], size[1], max_people)
        for truth in truths:
            if truth.num_keypoints == 0:  # in the picture but no joint seen: nothing to classify
                continue
            x, y, width, height = truth.bbox
            keypoints.append(truth.keypoints)
            boxes.append((x, y, x + width, y + height))
            names.append(truth.activity)
    if not names:
        raise ValueError(f"{images} generated images hold no person with a seen joint")
    log.info("activity study: still poses generated", images=images, poses=len(names))
    return still_samples(np.stack(keypoints), np.array(boxes), names, activities)


def loaded_still_samples(
    activities: tuple[str, ...],
    data: str | Path | None = None,
    poses: str | Path | None = None,
    splits: tuple[str, ...] = ("train", "val"),
) -> PoseSamples:
    """Still samples from a poses file, else from the ``activity`` labels of a COCO-format set's splits."""
    import json

    from model.train.coco import CocoKeypoints

    if poses is not None:
        entries = json.loads(Path(poses).read_text())["poses"]
        if not entries:
            raise ValueError(f"{poses} holds no pose")
        return still_samples(
            np.array([e["keypoints"] for e in entries], np.float32),
            np.array([e["bbox"] for e in entries], np.float32),
            [e["activity"] for e in entries],
            activities,
        )
    if data is None:
        raise ValueError("give a COCO-format folder with activity labels or a poses file")
    people = []
    for split in splits:
        try:
            source = CocoKeypoints.from_root(data, split)
        except ValueError:
            continue
        people += [p for i in range(len(source)) for p in source.people(i) if p.labelled and p.activity]
    if not people:
        raise ValueError(f"no split of {splits} under {data} has activity labels")
    return still_samples(
        np.stack([p.keypoints for p in people]),
        np.stack([p.box for p in people]),
        [p.activity for p in people],
        activities,
    )


@dataclass(frozen=True)
class SequenceRecipe:
    """Which generated sequences the windows come from (seeds ``seed·1000 + i``)."""

    sequences: int = 24
    frames: int = 150  # 6 s at 25 fps
    people: int = 5
    size: tuple[int, int] = (480, 480)
    sample_every: int = 4  # frames between two labelled frames of one track (neighbours are near copies)


def track_windows(
    frames: Iterable[dict],
    window: int,
    step: int,
    sample_every: int,
    activities: tuple[str, ...],
    group: int = 0,
) -> PoseSamples | None:
    """Windows of one sequence's ground truth (``iter_sequence_frames``' dicts): for each track and each
    labelled frame t (t divisible by ``sample_every``) whose frames t − (window−1)·step, …, t − step, t
    all show that track, its poses and boxes in that order and the activity at t. None when no window fits.
    """
    if window < 1 or step < 1 or sample_every < 1:
        raise ValueError(
            f"window, step and sample_every must be positive, got {window}, {step}, {sample_every}"
        )
    tracks: dict[int, dict[int, dict]] = {}
    for frame in frames:
        for person in frame["people"]:
            tracks.setdefault(int(person["track_id"]), {})[int(frame["frame_index"])] = person
    keypoints, boxes, names, track_ids, frame_indices = [], [], [], [], []
    for track_id in sorted(tracks):
        seen = tracks[track_id]
        for last in sorted(seen):
            indices = [last - (window - 1 - j) * step for j in range(window)]  # oldest first
            if last % sample_every or any(i not in seen for i in indices):
                continue
            people = [seen[i] for i in indices]
            if not any(value[2] > 0 for value in people[-1]["keypoints"]):
                continue  # the labelled frame shows no joint
            keypoints.append([p["keypoints"] for p in people])
            boxes.append([(x, y, x + w, y + h) for x, y, w, h in (p["bbox"] for p in people)])
            names.append(people[-1]["activity"])
            track_ids.append(track_id)
            frame_indices.append(indices)
    if not names:
        return None
    unknown = sorted(set(names) - set(activities))
    if unknown:
        raise ValueError(f"activity labels {unknown} are not among the activities {activities}")
    count = len(names)
    return PoseSamples(
        keypoints=np.asarray(keypoints, np.float32),
        boxes=np.asarray(boxes, np.float32),
        labels=np.array([activities.index(name) for name in names], np.int64),
        activities=activities,
        kind=SEQUENCE,
        groups=np.full(count, group, np.int64),
        track_ids=np.asarray(track_ids, np.int64),
        frame_indices=np.asarray(frame_indices, np.int64),
    )


def concat_samples(parts: list[PoseSamples]) -> PoseSamples:
    if not parts:
        raise ValueError("nothing to concatenate")
    first = parts[0]
    if any(
        p.activities != first.activities or p.kind != first.kind or p.window != first.window for p in parts
    ):
        raise ValueError("samples to join must share activities, kind and window")
    return PoseSamples(
        keypoints=np.concatenate([p.keypoints for p in parts]),
        boxes=np.concatenate([p.boxes for p in parts]),
        labels=np.concatenate([p.labels for p in parts]),
        activities=first.activities,
        kind=first.kind,
        groups=np.concatenate([p.groups for p in parts]),
        track_ids=np.concatenate([p.track_ids for p in parts]),
        frame_indices=np.concatenate([p.frame_indices for p in parts]),
    )


def sequence_samples(
    recipe: SequenceRecipe,
    window: int,
    step: int,
    seed: int = 0,
    activities: tuple[str, ...] = DEFAULT_ACTIVITIES,
) -> PoseSamples:
    """Windows of ``recipe.sequences`` generated sequences; each sequence is its own group."""
    from model.data.sequence import iter_sequence_frames

    parts = []
    for index in range(recipe.sequences):
        frames = (
            truth
            for _, truth in iter_sequence_frames(
                recipe.frames, recipe.people, seed * 1000 + index, size=recipe.size
            )
        )
        part = track_windows(frames, window, step, recipe.sample_every, activities, group=index)
        if part is not None:
            parts.append(part)
    if not parts:
        raise ValueError(f"no {window}-frame window fits in {recipe}")
    samples = concat_samples(parts)
    log.info("activity study: sequence windows", sequences=recipe.sequences, windows=len(samples))
    return samples
