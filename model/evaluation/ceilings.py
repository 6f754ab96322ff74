"""The keypoint AP each stage allows: the pipeline's persons with one stage's output put right from the
ground truth, scored by the same COCOeval.

* ``pipeline`` — the persons as the pipeline gives them (evaluation thresholds), the reference;
* ``left_right_oracle`` — each person's eight left/right pairs turned the way its best-OKS ground-truth
  person has them: what fixing left/right alone would give;
* ``peak_oracle`` — each joint of each person moved to the peak of its own channel nearest its
  ground-truth joint (the person matched by OKS): the assignment made perfect, the heatmaps' peaks as they
  are — the ceiling the keypoint subnet sets;
* ``detector_oracle`` — the ground-truth keypoints of the box's best-IoU person in every predicted box:
  the ceiling the detector's boxes and scores set;
* ``part_exact`` — per joint group (``diagnostics.JOINT_GROUPS``), the peak oracle with that group's
  labelled joints put exactly on the truth: how much of the gap between the peak oracle and the detector's
  ceiling each part's peaks cost, so the next training effort goes where the points are.

Measured on 195 held-out 480 px scenes (README): stage 2's demo checkpoint 0.101 / 0.130 / 0.244 / 0.755,
stage 3's 0.116 / 0.145 / 0.264 / 0.757, stage 4's (2 PRN epochs) 0.134 / 0.165 / 0.265 / 0.756, stage 5's
0.147 / 0.178 / 0.277 / 0.755. The detector is not what
holds keypoint AP down; the peaks and their assignment are.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import structlog
from torchvision.ops import box_iou

from model.evaluation.coco_eval import (
    evaluation_pipeline,
    keypoint_result,
    oks,
    person_category_id,
    pose_score,
    score_results,
)
from model.evaluation.diagnostics import JOINT_GROUPS
from model.evaluation.prn_eval import scored_annotations
from model.predictions import FLIP_PAIRS, NUM_KEYPOINTS, Detections, PosedPerson

log = structlog.get_logger()


@dataclass(frozen=True)
class TruthPerson:
    keypoints: np.ndarray  # (17, 3) x, y, v
    box: np.ndarray  # (4,) x1, y1, x2, y2
    area: float


@dataclass(frozen=True)
class StageCeilings:
    """Keypoint AP of the pipeline's persons as they are and with each stage put right."""

    images: int
    persons: int  # predicted persons scored
    pipeline: float
    left_right_oracle: float
    peak_oracle: float
    detector_oracle: float
    part_exact: dict[str, float] = dataclasses.field(default_factory=dict)  # group → AP (see above)

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def truth_people(gt: Any, image_id: int, category_id: int) -> list[TruthPerson]:
    people = []
    for annotation in scored_annotations(gt, image_id, category_id):
        x, y, w, h = (float(v) for v in annotation["bbox"])
        points = np.asarray(annotation["keypoints"], np.float64).reshape(NUM_KEYPOINTS, 3)
        people.append(TruthPerson(points, np.array([x, y, x + w, y + h]), float(annotation["area"])))
    return people


def truth_oks(keypoints: np.ndarray, truth: TruthPerson) -> float:
    """COCO's object keypoint similarity of predicted (17, ≥2) points against one ground-truth person."""
    return oks(keypoints, truth.keypoints, truth.area)


def left_right_oracle(person: PosedPerson, truth: TruthPerson) -> np.ndarray:
    """The person's keypoints with each left/right pair turned the way that scores the higher OKS."""
    points = person.keypoints.astype(np.float64).copy()
    for left, right in FLIP_PAIRS:
        turned = points.copy()
        turned[[left, right]] = turned[[right, left]]
        if truth_oks(turned, truth) > truth_oks(points, truth):
            points = turned
    return points


def peak_oracle(person: PosedPerson, truth: TruthPerson, peaks: np.ndarray) -> np.ndarray:
    """Each labelled joint moved to its own channel's peak nearest the ground-truth joint.

    peaks: the backbone stage's (17, K, 3) x, y, score of the image."""
    points = person.keypoints.astype(np.float64).copy()
    for joint in np.flatnonzero(truth.keypoints[:, 2] > 0):
        candidates = peaks[joint][peaks[joint][:, 2] > 0]
        if len(candidates):
            nearest = np.argmin(((candidates[:, :2] - truth.keypoints[joint, :2]) ** 2).sum(axis=1))
            points[joint] = candidates[nearest]
    return points


def part_exact(points: np.ndarray, truth: TruthPerson, joints: Sequence[int]) -> np.ndarray:
    """``points`` (17, 3) with the truth's labelled joints among ``joints`` put exactly on the truth."""
    exact = points.copy()
    for joint in joints:
        if truth.keypoints[joint, 2] > 0:
            exact[joint, :2] = truth.keypoints[joint, :2]
    return exact


def detector_oracle(person: PosedPerson, truths: Sequence[TruthPerson]) -> np.ndarray:
    """The keypoints of the ground-truth person whose box overlaps the predicted box most (score 1)."""
    import torch

    boxes = torch.tensor(np.stack([t.box for t in truths]), dtype=torch.float64)
    overlap = box_iou(torch.tensor([person.bbox], dtype=torch.float64), boxes)[0]
    truth = truths[int(overlap.argmax())]
    points = truth.keypoints.copy()
    points[:, 2] = (truth.keypoints[:, 2] > 0).astype(np.float64)
    return points


Fix = Callable[[PosedPerson, Sequence[TruthPerson], np.ndarray], np.ndarray]


def _best_by_oks(person: PosedPerson, truths: Sequence[TruthPerson]) -> TruthPerson:
    return max(truths, key=lambda truth: truth_oks(person.keypoints, truth))


def _as_given(person: PosedPerson, truths: Sequence[TruthPerson], peaks: np.ndarray) -> np.ndarray:
    return person.keypoints


def _sides_right(person: PosedPerson, truths: Sequence[TruthPerson], peaks: np.ndarray) -> np.ndarray:
    return left_right_oracle(person, _best_by_oks(person, truths))


def _assignment_right(person: PosedPerson, truths: Sequence[TruthPerson], peaks: np.ndarray) -> np.ndarray:
    return peak_oracle(person, _best_by_oks(person, truths), peaks)


def _keypoints_right(person: PosedPerson, truths: Sequence[TruthPerson], peaks: np.ndarray) -> np.ndarray:
    return detector_oracle(person, truths)


FIXES: dict[str, Fix] = {
    "pipeline": _as_given,
    "left_right_oracle": _sides_right,
    "peak_oracle": _assignment_right,
    "detector_oracle": _keypoints_right,
}


def ceilings_of(
    gt: Any,
    image_ids: Sequence[int],
    detections: Sequence[Detections],
    persons: Sequence[Sequence[PosedPerson]],
) -> StageCeilings:
    """The four APs, and the per-part ones, from the backbone stage's ``detections`` and the residual stage's
    ``persons``."""
    if not (len(image_ids) == len(detections) == len(persons)):
        raise ValueError("one Detections and one person list per image id are needed")
    category_id = person_category_id(gt)
    results: dict[str, list[dict[str, Any]]] = {name: [] for name in FIXES}
    parts: dict[str, list[dict[str, Any]]] = {group: [] for group in JOINT_GROUPS}
    for image_id, detection, posed in zip(image_ids, detections, persons, strict=True):
        truths = truth_people(gt, int(image_id), category_id)
        for person in posed:
            score = pose_score(person.score, person.keypoints)
            if score <= 0:
                continue
            fixed = {
                name: fix(person, truths, detection.peaks) if truths else person.keypoints
                for name, fix in FIXES.items()
            }
            for name, points in fixed.items():
                results[name].append(keypoint_result(int(image_id), points, score, category_id))
            truth = _best_by_oks(person, truths) if truths else None
            for group, joints in JOINT_GROUPS.items():  # on the peak oracle's points, not computed again
                points = fixed["peak_oracle"]
                points = part_exact(points, truth, joints) if truth is not None else points
                parts[group].append(keypoint_result(int(image_id), points, score, category_id))
    figures = {name: score_results(gt, rows, "keypoints", image_ids)["AP"] for name, rows in results.items()}
    by_part = {group: score_results(gt, rows, "keypoints", image_ids)["AP"] for group, rows in parts.items()}
    return StageCeilings(
        images=len(image_ids), persons=len(results["pipeline"]), **figures, part_exact=by_part
    )


def pipeline_ceilings(
    pipeline: Any,
    data_dir: str | Path,
    split: str = "val",
    max_images: int | None = None,
    batch_size: int = 4,
) -> StageCeilings:
    """Run ``pipeline`` (a ``PosePipeline``, at the evaluation thresholds) over ``data_dir``'s ``split``
    and measure the ceilings of its stages."""
    from model.train.coco import CocoKeypoints

    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")
    view = evaluation_pipeline(pipeline)
    source = CocoKeypoints.from_root(data_dir, split, require_labelled=False, max_images=max_images)
    image_ids = list(source.image_ids)
    detections: list[Detections] = []
    for start in range(0, len(image_ids), batch_size):
        stop = min(start + batch_size, len(image_ids))
        detections.extend(view.backbone([source.load_image(i) for i in range(start, stop)]))
    ceilings = ceilings_of(source.coco, image_ids, detections, view.residual(detections))
    log.info("stage ceilings", **ceilings.as_dict())
    return ceilings
