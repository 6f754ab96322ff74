"""Diagnostics that tell whether a training run is on track, beyond COCO AP.

Three figures, each separating one failure from the others:

* **joint error** — for every labelled joint of every ground-truth person, the distance (original image
  pixels) to the nearest peak of that joint's *own* heatmap channel; median, share within 2/4/8 px, per
  joint group. Localisation alone: no detector, no assignment.
* **left/right confusion** — the Pearson correlation of each left/right channel pair (eyes, ears,
  shoulders, elbows, wrists, hips, knees, ankles), averaged over images (≈ 1: the channels fire on both
  sides alike), and the share of lateral ground-truth joints whose nearest peak in the *opposite* side's
  channel is closer than in their own channel, a tie counting one half: 0 when the sides are right, 0.5
  when the two channels are alike (chance), towards 1 when they are swapped.
* **keypoint AP with ground-truth boxes** — the PRN (or its nearest-peak baseline, as the pipeline
  would use) assigning the predicted peaks to the ground-truth person boxes: keypoint quality without the
  detector (``model.evaluation.prn_eval`` does the same with ground-truth peaks).

``pipeline_diagnostics`` runs a ``PosePipeline``'s backbone stage over a COCO-format split;
``diagnose_heatmaps`` takes heatmaps directly (tests, other models).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import structlog
import torch

from model.config import ModelConfig
from model.decode import HEATMAP_STRIDE, find_peaks, heatmap_to_canvas
from model.evaluation.coco_eval import keypoint_result, person_category_id, pose_score, score_results
from model.evaluation.prn_eval import ground_truth_detections, scored_annotations
from model.predictions import COCO_KEYPOINT_NAMES, FLIP_PAIRS, NUM_KEYPOINTS, Detections, PosedPerson
from model.preprocess import Letterbox, preprocess, unletterbox_points

log = structlog.get_logger()

WITHIN_PX = (2, 4, 8)  # thresholds (original image pixels) of the "share of joints within" figures
JOINT_GROUPS: dict[str, tuple[int, ...]] = {
    "head": (0, 1, 2, 3, 4),
    "shoulders": (5, 6),
    "elbows": (7, 8),
    "wrists": (9, 10),
    "hips": (11, 12),
    "knees": (13, 14),
    "ankles": (15, 16),
}


def _mirror() -> np.ndarray:
    mirror = np.arange(NUM_KEYPOINTS)
    for left, right in FLIP_PAIRS:
        mirror[left], mirror[right] = right, left
    return mirror


MIRROR = _mirror()  # (17,) MIRROR[j]: the joint on the other side (the nose is its own mirror)
LATERAL = np.arange(NUM_KEYPOINTS) != MIRROR  # (17,) joints that have a side

Assign = Callable[[Sequence[Detections]], list[list[PosedPerson]]]


@dataclass(frozen=True)
class JointErrorSummary:
    """Distances of ground-truth joints to the nearest peak of their own channel (original pixels)."""

    joints: int  # labelled ground-truth joints
    found: float | None  # share whose channel has any peak at all
    median_px: float | None  # None when there is no joint, or more than half have no peak
    within_px: dict[str, float | None]  # "2px" → share of joints within 2 px, …


@dataclass(frozen=True)
class LeftRightSummary:
    correlation: float | None  # mean over the pairs of the per-pair mean over images
    correlation_by_pair: dict[str, float | None]  # "shoulder" → mean Pearson r over images
    # share of lateral joints nearer a peak of the other side's channel (a tie: ½): 0 right, 0.5 chance,
    # 1 swapped
    closer_opposite: float | None
    lateral_joints: int  # lateral labelled joints with a peak in their own or their mirror channel


@dataclass(frozen=True)
class PipelineDiagnostics:
    images: int
    persons: int  # labelled ground-truth persons
    joint_error: JointErrorSummary
    joint_error_by_group: dict[str, JointErrorSummary]
    # "seen" (COCO v=2) / "hidden" (v=1: behind someone, something or the own body, e.g. the face of a
    # head seen from behind): hidden joints are ≈ 40 % of the synthetic labels, most of the error's tail
    joint_error_by_visibility: dict[str, JointErrorSummary]
    left_right: LeftRightSummary
    gt_box_keypoints: dict[str, float] | None  # COCO keypoint stats; None when no assigner was given
    gt_box_assignment: str | None  # "network" | "baseline" | None

    @property
    def median_joint_error_px(self) -> float | None:
        return self.joint_error.median_px

    @property
    def left_right_correlation(self) -> float | None:
        return self.left_right.correlation

    @property
    def keypoint_ap_gt_boxes(self) -> float | None:
        return None if self.gt_box_keypoints is None else self.gt_box_keypoints["AP"]

    def as_dict(self) -> dict[str, Any]:
        """JSON-able: the headline figures flat (``median_joint_error_px``, ``left_right_correlation``,
        ``keypoint_ap_gt_boxes``), then every field."""
        return {
            "median_joint_error_px": self.median_joint_error_px,
            "left_right_correlation": self.left_right_correlation,
            "keypoint_ap_gt_boxes": self.keypoint_ap_gt_boxes,
            **dataclasses.asdict(self),
        }


@dataclass(frozen=True)
class ImageEvidence:
    """One image's contribution: per labelled ground-truth joint, own/opposite nearest-peak distances."""

    image_id: int
    own: np.ndarray  # (M,) distance to the nearest own-channel peak (inf: none)
    opposite: np.ndarray  # (M,) distance to the nearest mirror-channel peak (inf: none)
    joint: np.ndarray  # (M,) joint index of each
    visibility: np.ndarray  # (M,) COCO flag of each (1 hidden, 2 seen)
    correlations: np.ndarray  # (len(FLIP_PAIRS),) Pearson r per pair (nan: a flat channel)
    detections: Detections | None  # ground-truth boxes with the predicted peaks (None: no labelled person)


def peaks_in_image(
    heatmaps: torch.Tensor, letterboxes: Sequence[Letterbox], config: ModelConfig
) -> np.ndarray:
    """heatmaps (B, ≥17, H/4, W/4) of the canvas → peaks (B, 17, K, 3) x, y in original image pixels and
    score (0 = empty slot), decoded exactly as the backbone stage does."""
    if heatmaps.ndim != 4 or heatmaps.shape[1] < NUM_KEYPOINTS:
        raise ValueError(f"heatmaps must be (B, ≥{NUM_KEYPOINTS}, H, W), got {tuple(heatmaps.shape)}")
    if len(letterboxes) != heatmaps.shape[0]:
        raise ValueError(f"{len(letterboxes)} letterboxes for {heatmaps.shape[0]} heatmaps")
    peaks = find_peaks(
        heatmaps[:, :NUM_KEYPOINTS], config.peak_top_k, config.peak_threshold, config.peak_nms_kernel
    )
    peaks[..., :2] = heatmap_to_canvas(peaks[..., :2], HEATMAP_STRIDE)
    peaks_np = peaks.float().cpu().numpy()
    out = np.zeros_like(peaks_np)
    for index, box in enumerate(letterboxes):
        found = peaks_np[index, ..., 2:] > 0
        out[index, ..., :2] = np.where(found, unletterbox_points(peaks_np[index, ..., :2], box), 0.0)
        out[index, ..., 2] = peaks_np[index, ..., 2]
    return out


def nearest_peak_distances(peaks: np.ndarray, keypoints: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """peaks (17, K, 3), keypoints (N, 17, 3) → distances (N, 17) to the nearest peak of each joint's own
    channel and of its mirror joint's channel (inf where that channel has no peak)."""
    peaks = np.asarray(peaks, np.float64)
    keypoints = np.asarray(keypoints, np.float64).reshape(-1, NUM_KEYPOINTS, 3)
    if peaks.ndim != 3 or peaks.shape[0] != NUM_KEYPOINTS or peaks.shape[2] != 3:
        raise ValueError(f"peaks must be ({NUM_KEYPOINTS}, K, 3), got {peaks.shape}")
    # (N, 17 joints, 17 channels, K): every joint against every channel's peaks
    offsets = keypoints[:, :, None, None, :2] - peaks[None, None, :, :, :2]
    distances = np.linalg.norm(offsets, axis=-1)
    distances = np.where(peaks[None, None, :, :, 2] > 0, distances, np.inf).min(axis=-1, initial=np.inf)
    joints = np.arange(NUM_KEYPOINTS)
    return distances[:, joints, joints], distances[:, joints, MIRROR]


def left_right_correlations(heatmaps: torch.Tensor) -> np.ndarray:
    """heatmaps (B, ≥17, H, W) → Pearson r (B, len(FLIP_PAIRS)) of each left/right channel pair; nan
    where a channel is flat."""
    if heatmaps.ndim != 4 or heatmaps.shape[1] < NUM_KEYPOINTS:
        raise ValueError(f"heatmaps must be (B, ≥{NUM_KEYPOINTS}, H, W), got {tuple(heatmaps.shape)}")
    left = torch.tensor([pair[0] for pair in FLIP_PAIRS], device=heatmaps.device)
    right = torch.tensor([pair[1] for pair in FLIP_PAIRS], device=heatmaps.device)
    maps = heatmaps.float().flatten(2)  # (B, 17+, H·W)
    a = maps[:, left] - maps[:, left].mean(-1, keepdim=True)  # (B, P, H·W)
    b = maps[:, right] - maps[:, right].mean(-1, keepdim=True)
    denominator = a.norm(dim=-1) * b.norm(dim=-1)
    r = (a * b).sum(-1) / denominator.clamp(min=1e-12)
    r = torch.where(denominator > 1e-12, r, torch.full_like(r, float("nan")))
    return r.cpu().numpy().astype(np.float64)


def _pair_name(left: int) -> str:
    return COCO_KEYPOINT_NAMES[left].removeprefix("left_")


def collect_evidence(
    heatmaps: torch.Tensor,
    letterboxes: Sequence[Letterbox],
    gt: Any,
    image_ids: Sequence[int],
    config: ModelConfig,
) -> list[ImageEvidence]:
    """One ``ImageEvidence`` per image of a batch: heatmaps (B, ≥17, H/4, W/4) of the letterboxed
    canvases, ``gt`` a pycocotools ``COCO`` holding ``image_ids`` (in the batch's order)."""
    if len(image_ids) != heatmaps.shape[0]:
        raise ValueError(f"{len(image_ids)} image ids for {heatmaps.shape[0]} heatmaps")
    category_id = person_category_id(gt)
    peaks = peaks_in_image(heatmaps, letterboxes, config)  # (B, 17, K, 3)
    correlations = left_right_correlations(heatmaps)  # (B, P)
    evidence = []
    for index, image_id in enumerate(image_ids):
        annotations = scored_annotations(gt, int(image_id), category_id)
        box = letterboxes[index]
        if annotations:
            keypoints = np.stack(
                [np.asarray(a["keypoints"], np.float64).reshape(NUM_KEYPOINTS, 3) for a in annotations]
            )
            own, opposite = nearest_peak_distances(peaks[index], keypoints)
            labelled = keypoints[..., 2] > 0  # (N, 17)
            joint = np.broadcast_to(np.arange(NUM_KEYPOINTS), labelled.shape)[labelled]
            visibility = keypoints[..., 2][labelled].astype(np.int64)
            detections = dataclasses.replace(
                ground_truth_detections(annotations, box.width, box.height), peaks=peaks[index]
            )
            own, opposite = own[labelled], opposite[labelled]
        else:
            own = opposite = np.zeros(0)
            joint = visibility = np.zeros(0, np.int64)
            detections = None
        evidence.append(
            ImageEvidence(int(image_id), own, opposite, joint, visibility, correlations[index], detections)
        )
    return evidence


def _error_summary(distances: np.ndarray) -> JointErrorSummary:
    count = int(distances.size)
    if count == 0:
        return JointErrorSummary(0, None, None, {f"{px}px": None for px in WITHIN_PX})
    median = float(np.median(distances))
    return JointErrorSummary(
        joints=count,
        found=float(np.isfinite(distances).mean()),
        median_px=median if math.isfinite(median) else None,
        within_px={f"{px}px": float((distances <= px).mean()) for px in WITHIN_PX},
    )


def _finite_mean(values: np.ndarray) -> np.ndarray:
    """(N, P) → (P,) mean over the finite entries of each column; nan where there is none."""
    finite = np.isfinite(values)
    counts = finite.sum(axis=0)
    sums = np.where(finite, values, 0.0).sum(axis=0)
    return np.where(counts > 0, sums / np.maximum(counts, 1), np.nan)


def _nan_to_none(value: float) -> float | None:
    return None if not math.isfinite(value) else float(value)


def _gt_box_keypoint_ap(evidence: Sequence[ImageEvidence], gt: Any, assign: Assign) -> dict[str, float]:
    category_id = person_category_id(gt)
    kept = [e for e in evidence if e.detections is not None]
    if not kept:
        raise ValueError("no image with a labelled person to score keypoints with ground-truth boxes on")
    posed = assign([e.detections for e in kept])
    results = []
    for item, persons in zip(kept, posed, strict=True):
        for person in persons:
            score = pose_score(person.score, person.keypoints)  # box score 1 × mean joint score
            if score > 0:
                results.append(keypoint_result(item.image_id, person.keypoints, score, category_id))
    return score_results(gt, results, "keypoints", [e.image_id for e in kept])


def summarise(
    evidence: Sequence[ImageEvidence],
    gt: Any = None,
    assign: Assign | None = None,
    assignment: str | None = None,
) -> PipelineDiagnostics:
    """The figures over all images; keypoint AP with ground-truth boxes when ``assign`` (and ``gt``)
    are given — ``assignment`` names it in the report ("network" / "baseline")."""
    if not evidence:
        raise ValueError("no image to diagnose")
    own = np.concatenate([e.own for e in evidence])
    opposite = np.concatenate([e.opposite for e in evidence])
    joint = np.concatenate([e.joint for e in evidence]).astype(np.int64)
    visibility = np.concatenate([e.visibility for e in evidence]).astype(np.int64)
    lateral = LATERAL[joint] & (np.isfinite(own) | np.isfinite(opposite))
    closer = (opposite < own).astype(np.float64) + 0.5 * (opposite == own)
    correlations = np.stack([e.correlations for e in evidence])  # (images, P)
    per_pair = _finite_mean(correlations)  # (P,) mean over the images where both channels vary
    overall = float(_finite_mean(per_pair[:, None])[0])  # mean over the pairs
    left_right = LeftRightSummary(
        correlation=_nan_to_none(overall),
        correlation_by_pair={
            _pair_name(left): _nan_to_none(float(r))
            for (left, _), r in zip(FLIP_PAIRS, per_pair, strict=True)
        },
        closer_opposite=float(closer[lateral].mean()) if lateral.any() else None,
        lateral_joints=int(lateral.sum()),
    )
    gt_box = None
    if assign is not None:
        if gt is None:
            raise ValueError("keypoint AP with ground-truth boxes needs the ground truth (gt)")
        gt_box = _gt_box_keypoint_ap(evidence, gt, assign)
    return PipelineDiagnostics(
        images=len(evidence),
        persons=sum(e.detections.num_persons for e in evidence if e.detections is not None),
        joint_error=_error_summary(own),
        joint_error_by_group={
            name: _error_summary(own[np.isin(joint, members)]) for name, members in JOINT_GROUPS.items()
        },
        joint_error_by_visibility={
            "seen": _error_summary(own[visibility == 2]),
            "hidden": _error_summary(own[visibility == 1]),
        },
        left_right=left_right,
        gt_box_keypoints=gt_box,
        gt_box_assignment=assignment if assign is not None else None,
    )


def diagnose_heatmaps(
    heatmaps: torch.Tensor,
    letterboxes: Sequence[Letterbox],
    gt: Any,
    image_ids: Sequence[int],
    config: ModelConfig,
    assign: Assign | None = None,
    assignment: str | None = None,
) -> PipelineDiagnostics:
    """The diagnostics of given heatmaps (B, ≥17, H/4, W/4) of letterboxed canvases (one batch)."""
    return summarise(collect_evidence(heatmaps, letterboxes, gt, image_ids, config), gt, assign, assignment)


def pipeline_diagnostics(
    pipeline: Any,
    data_dir: str | Path,
    split: str = "val",
    max_images: int | None = None,
    batch_size: int = 4,
) -> PipelineDiagnostics:
    """Run ``pipeline``'s (a ``PosePipeline``) backbone stage over ``data_dir``'s ``split`` (the images
    ``coco_eval.evaluate_pipeline`` scores) and diagnose its keypoint heatmaps; keypoint AP with
    ground-truth boxes uses the pipeline's residual stage (PRN, or its baseline when untrained)."""
    from model.train.coco import CocoKeypoints

    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")
    source = CocoKeypoints.from_root(data_dir, split, require_labelled=False, max_images=max_images)
    detector = pipeline.backbone.module  # PoseDetector: the backbone stage's slice, on its device
    config = detector.config
    device = pipeline.backbone.device
    image_ids = list(source.image_ids)
    evidence: list[ImageEvidence] = []
    for start in range(0, len(image_ids), batch_size):
        stop = min(start + batch_size, len(image_ids))
        images = [source.load_image(i) for i in range(start, stop)]
        batch, letterboxes = preprocess(images, config.input_size, config.pixel_mean_bgr)
        with torch.inference_mode():
            features = detector.backbone(batch.to(device))
            heatmaps, _ = detector.keypoint_head(detector.keypoint_fpn(features))  # (B, 18, H/4, W/4)
        evidence += collect_evidence(heatmaps, letterboxes, source.coco, image_ids[start:stop], config)
    assignment = "network" if getattr(pipeline.residual, "use_network", False) else "baseline"
    diagnostics = summarise(evidence, source.coco, pipeline.residual, assignment)
    log.info(
        "pipeline diagnostics",
        images=diagnostics.images,
        median_joint_error_px=diagnostics.joint_error.median_px,
        left_right_correlation=diagnostics.left_right.correlation,
        gt_box_keypoint_ap=(diagnostics.gt_box_keypoints or {}).get("AP"),
    )
    return diagnostics
