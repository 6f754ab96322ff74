"""The model as a user sees it, on generated scenes of a seed it never trained on, at its display threshold.

Per scene the reported persons are matched one-to-one to the ground-truth people (greedy by score, box
IoU ≥ 0.5, as COCO matches): precision and recall of the persons a subscriber receives, the OKS of each
matched pose, and the activity of each matched person against its label. Two references keep the figures
honest: a *mean pose* pasted into every matched box (a model that predicts no keypoints at all scores
this), and the activity classifier on the same persons' ground-truth poses.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from model.evaluation.coco_eval import oks


@dataclass(frozen=True)
class UnseenSceneReport:
    scenes: int
    truth_persons: int
    reported_persons: int
    matched: int
    precision: float
    recall: float
    median_oks: float  # matched persons, the model's pose
    mean_pose_median_oks: float  # matched persons, the mean pose pasted into the model's box
    share_oks_above_half: float
    activity_accuracy_predicted: float  # matched persons, activity from the predicted pose
    activity_accuracy_truth_pose: float  # the same persons, activity from their ground-truth pose

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def mean_box_pose(seed: int, scenes: int, size: int, max_people: int) -> np.ndarray:
    """(17, 2) the mean ground-truth pose in box coordinates (0–1) over scenes of ``seed``."""
    from model.data.synth import render_example

    poses = []
    for index in range(scenes):
        _, truths = render_example(seed, index, size, size, max_people=max_people)
        for truth in truths:
            x, y, w, h = truth.bbox
            labelled = truth.keypoints[:, 2] > 0
            if labelled.all() and w > 0 and h > 0:
                poses.append((truth.keypoints[:, :2] - (x, y)) / (w, h))
    if not poses:
        raise ValueError("no fully labelled person to average")
    return np.mean(poses, axis=0)


def check_unseen_scenes(
    pipeline: Any, seed: int, scenes: int = 24, size: int = 480, max_people: int = 8
) -> UnseenSceneReport:
    """``pipeline`` (a ``PosePipeline``) on ``scenes`` generated ``size``² scenes of ``seed``."""
    from model.data.synth import render_example
    from model.predictions import PosedPerson
    from model.train.samples import match_persons

    if scenes < 1:
        raise ValueError(f"scenes must be at least 1, got {scenes}")
    template = mean_box_pose(seed + 1, max(8, scenes // 2), size, max_people)
    truth_total = reported = 0
    similarities, baseline, right, right_truth = [], [], [], []
    truth_posed, truth_labels = [], []
    for index in range(scenes):
        image, truths = render_example(seed, index, size, size, max_people=max_people)
        (persons,) = pipeline.predict([image])
        truth_total += len(truths)
        reported += len(persons)
        if not truths or not persons:
            continue
        truth_boxes = np.array([[x, y, x + w, y + h] for x, y, w, h in (t.bbox for t in truths)])
        matches = match_persons(
            np.array([p.bbox for p in persons]), np.array([p.score for p in persons]), truth_boxes
        )
        for person, match in zip(persons, matches, strict=True):
            if match < 0:
                continue
            truth = truths[int(match)]
            similarities.append(oks(np.asarray(person.keypoints), truth.keypoints, truth.area))
            x1, y1, x2, y2 = person.bbox
            pasted = template * (x2 - x1, y2 - y1) + (x1, y1)
            baseline.append(oks(pasted, truth.keypoints, truth.area))
            right.append(person.activity == truth.activity)
            x, y, w, h = truth.bbox
            truth_posed.append(PosedPerson(bbox=(x, y, x + w, y + h), score=1.0, keypoints=truth.keypoints))
            truth_labels.append(truth.activity)
    if truth_posed:
        (classified,) = pipeline.model.activity.classify([truth_posed])
        right_truth = [p.activity == label for p, label in zip(classified, truth_labels, strict=True)]
    matched = len(similarities)

    def median(values: list[float]) -> float:
        return round(float(np.median(values)), 4) if values else 0.0

    def mean(values: list[bool] | list[float]) -> float:
        return round(float(np.mean(values)), 4) if values else 0.0

    return UnseenSceneReport(
        scenes=scenes,
        truth_persons=truth_total,
        reported_persons=reported,
        matched=matched,
        precision=round(matched / max(reported, 1), 4),
        recall=round(matched / max(truth_total, 1), 4),
        median_oks=median(similarities),
        mean_pose_median_oks=median(baseline),
        share_oks_above_half=mean([value >= 0.5 for value in similarities]),
        activity_accuracy_predicted=mean(right),
        activity_accuracy_truth_pose=mean(right_truth),
    )
