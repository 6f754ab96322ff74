"""COCO keypoint AP/AR (OKS) and person box AP/AR of the whole pipeline on a COCO-format split.

The pipeline (detector + keypoints + PRN + activity) runs over every image of the split that has a person
annotation; its persons become COCO results (``keypoints`` and ``bbox``) scored by pycocotools'
``COCOeval``. The synthetic set uses COCO's 17 joints, so OKS uses COCO's standard per-joint sigmas.

Persons are detected at the evaluation thresholds (``ModelConfig.eval_score_threshold``, default 0.05, and
``eval_max_persons``, 20), not at the display threshold ``person_score_threshold`` that infer/serve report
from: AP averages precision over all recall levels, so persons cut at a display threshold can never be
recalled and cap AP (≈ 0.5 for the demo preset's 0.4 even with perfect keypoints).
"""

from __future__ import annotations

import contextlib
import io
import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import structlog
import torch

from model.predictions import NUM_KEYPOINTS

log = structlog.get_logger()

# COCO's per-joint OKS sigmas (pycocotools' defaults), in COCO joint order.
COCO_KEYPOINT_SIGMAS = (
    np.array(
        [0.26, 0.25, 0.25, 0.35, 0.35, 0.79, 0.79, 0.72, 0.72, 0.62, 0.62, 1.07, 1.07, 0.87, 0.87, 0.89, 0.89]
    )
    / 10.0
)
KEYPOINT_STAT_NAMES = ("AP", "AP50", "AP75", "APm", "APl", "AR", "AR50", "AR75", "ARm", "ARl")
BBOX_STAT_NAMES = ("AP", "AP50", "AP75", "APs", "APm", "APl", "AR1", "AR10", "AR100", "ARs", "ARm", "ARl")
STAT_NAMES = {"keypoints": KEYPOINT_STAT_NAMES, "bbox": BBOX_STAT_NAMES}


def oks(predicted: np.ndarray, truth: np.ndarray, area: float) -> float:
    """Object keypoint similarity of one predicted pose (17, ≥2) against one ground truth (17, 3)."""
    labelled = truth[:, 2] > 0
    if not labelled.any():
        return 0.0
    squared = ((predicted[:, :2] - truth[:, :2]) ** 2).sum(axis=1)
    similarity = np.exp(-squared / (2 * max(area, 1.0) * (2 * COCO_KEYPOINT_SIGMAS) ** 2))
    return float(similarity[labelled].mean())


def load_ground_truth(source: str | Path | dict[str, Any]) -> Any:
    """A pycocotools ``COCO`` from a person-keypoints JSON file or an in-memory COCO document."""
    from pycocotools.coco import COCO

    with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints its progress
        if isinstance(source, dict):
            gt = COCO()
            gt.dataset = source
            gt.createIndex()
        else:
            gt = COCO(str(source))
    return gt


def person_category_id(gt: Any) -> int:
    ids = gt.getCatIds(catNms=["person"]) or sorted(gt.cats)
    if not ids:
        raise ValueError("the ground truth has no category")
    return int(ids[0])


def keypoint_result(
    image_id: int, keypoints: np.ndarray, score: float, category_id: int = 1
) -> dict[str, Any]:
    """One COCO keypoint result; keypoints (17, 3) x, y, confidence (the third value is not scored)."""
    points = np.asarray(keypoints, np.float64).reshape(NUM_KEYPOINTS, 3)
    return {
        "image_id": int(image_id),
        "category_id": int(category_id),
        "keypoints": [round(float(v), 3) for v in points.reshape(-1)],
        "score": float(score),
    }


def box_result(
    image_id: int, bbox_xyxy: Sequence[float], score: float, category_id: int = 1
) -> dict[str, Any]:
    x1, y1, x2, y2 = (float(v) for v in bbox_xyxy)
    return {
        "image_id": int(image_id),
        "category_id": int(category_id),
        "bbox": [round(x1, 3), round(y1, 3), round(x2 - x1, 3), round(y2 - y1, 3)],
        "score": float(score),
    }


def pose_score(person_score: float, keypoints: np.ndarray) -> float:
    """A pose's confidence: the box score × the mean score of the joints found (0 when none is)."""
    scores = np.asarray(keypoints, np.float64).reshape(NUM_KEYPOINTS, 3)[:, 2]
    found = scores > 0
    return float(person_score) * float(scores[found].mean()) if found.any() else 0.0


def score_results(
    gt: Any,
    results: list[dict[str, Any]],
    iou_type: str,
    image_ids: Iterable[int] | None = None,
    sigmas: np.ndarray | None = None,
) -> dict[str, float]:
    """COCOeval's summary statistics (named, see ``STAT_NAMES``) of ``results`` against ``gt``.

    ``iou_type`` "keypoints" (OKS with COCO's sigmas unless given) or "bbox". No result at all scores 0.
    """
    from pycocotools.cocoeval import COCOeval

    if iou_type not in STAT_NAMES:
        raise ValueError(f"iou_type must be one of {sorted(STAT_NAMES)}, got {iou_type!r}")
    names = STAT_NAMES[iou_type]
    ids = sorted(int(i) for i in (image_ids if image_ids is not None else gt.getImgIds()))
    wanted = set(ids)
    results = [r for r in results if int(r["image_id"]) in wanted]
    if not results:  # pycocotools cannot load an empty result list
        return dict.fromkeys(names, 0.0)
    with contextlib.redirect_stdout(io.StringIO()):
        detections = gt.loadRes([dict(r) for r in results])  # loadRes adds fields in place: copy
        evaluator = COCOeval(gt, detections, iou_type)
        evaluator.params.imgIds = ids
        if iou_type == "keypoints":
            evaluator.params.kpt_oks_sigmas = np.asarray(
                COCO_KEYPOINT_SIGMAS if sigmas is None else sigmas, np.float64
            )
        evaluator.evaluate()
        evaluator.accumulate()
        evaluator.summarize()
    # COCOeval writes -1 where a statistic has no ground truth (e.g. no small person): keep it as is
    return {name: float(value) for name, value in zip(names, evaluator.stats, strict=True)}


def pipeline_results(
    image_ids: Sequence[int], predictions: Sequence[Sequence[Any]], category_id: int = 1
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Per image, the pipeline's ``PersonPrediction``s → (keypoint results, box results)."""
    keypoint_results: list[dict[str, Any]] = []
    box_results: list[dict[str, Any]] = []
    for image_id, persons in zip(image_ids, predictions, strict=True):
        for person in persons:
            box_results.append(box_result(image_id, person.bbox, person.score, category_id))
            score = pose_score(person.score, person.keypoints)
            if score > 0:
                keypoint_results.append(keypoint_result(image_id, person.keypoints, score, category_id))
    return keypoint_results, box_results


def evaluation_pipeline(
    pipeline: Any, score_threshold: float | None = None, max_persons: int | None = None
) -> Any:
    """The same network as ``pipeline`` (a ``PosePipeline``; weights shared, not copied) detecting persons
    from ``score_threshold`` (default ``config.eval_score_threshold``) and keeping up to ``max_persons``
    (default ``config.eval_max_persons``) per image; ``pipeline`` itself is left as it is.

    The detector reads its thresholds from the model's config, so the view is a second ``MultiPoseNet``
    of the evaluation config, built on the meta device (no init, no RNG draw) and given ``pipeline``'s very
    tensors (``load_state_dict(assign=True)``)."""
    from model.multiposenet import MultiPoseNet
    from model.pipeline import PosePipeline

    model = pipeline.model
    config = model.config
    score_threshold = config.eval_score_threshold if score_threshold is None else float(score_threshold)
    max_persons = config.eval_max_persons if max_persons is None else int(max_persons)
    if not 0.0 <= score_threshold <= 1.0:
        raise ValueError(f"score_threshold must lie in [0, 1], got {score_threshold}")
    if max_persons < 1:
        raise ValueError(f"max_persons must be at least 1, got {max_persons}")
    eval_config = config.model_copy(
        update={"person_score_threshold": score_threshold, "max_persons": max_persons}
    )
    with torch.device("meta"):
        view = MultiPoseNet(eval_config)
    view.load_state_dict(model.state_dict(), assign=True)
    view.trained_parts = set(model.trained_parts)
    return PosePipeline(view.eval(), pipeline.model_version, pipeline.device, pipeline.test_time)


def evaluate_pipeline(
    pipeline: Any,
    data: str | Path,
    split: str = "val",
    max_images: int | None = None,
    batch_size: int = 4,
    results_dir: str | Path | None = None,
    score_threshold: float | None = None,
    max_persons: int | None = None,
) -> dict[str, Any]:
    """Run a ``PosePipeline`` over ``data``'s ``split`` and score it: keypoint AP/AR (OKS) and box AP/AR.

    Persons are detected at the evaluation thresholds (see ``evaluation_pipeline``; ``score_threshold`` /
    ``max_persons`` override the config's ``eval_score_threshold`` / ``eval_max_persons``). A pipeline
    without a ``model`` (any object with ``predict``) is run as it is. ``results_dir``: also write the
    COCO results JSON files there (``keypoints_results.json``, ``bbox_results.json``)."""
    import json

    from model.train.coco import CocoKeypoints

    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")
    thresholds: dict[str, Any] = {"score_threshold": None, "max_persons": None}
    if hasattr(pipeline, "model"):
        pipeline = evaluation_pipeline(pipeline, score_threshold, max_persons)
        detector_config = pipeline.model.config
        thresholds = {
            "score_threshold": detector_config.person_score_threshold,
            "max_persons": detector_config.max_persons,
        }
    source = CocoKeypoints.from_root(data, split, require_labelled=False, max_images=max_images)
    category_id = source.category_id
    image_ids = list(source.image_ids)
    predictions: list[Any] = []
    started = time.perf_counter()
    for start in range(0, len(image_ids), batch_size):
        images = [source.load_image(i) for i in range(start, min(start + batch_size, len(image_ids)))]
        predictions.extend(pipeline.predict(images))
    seconds = time.perf_counter() - started
    keypoint_results, box_results = pipeline_results(image_ids, predictions, category_id)
    if results_dir is not None:
        folder = Path(results_dir)
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "keypoints_results.json").write_text(json.dumps(keypoint_results))
        (folder / "bbox_results.json").write_text(json.dumps(box_results))
    summary = {
        "data": str(data),
        "split": split,
        "annotation_file": str(source.annotation_file),
        "images": len(image_ids),
        "ground_truth_persons": sum(
            1
            for a in source.coco.loadAnns(source.coco.getAnnIds(imgIds=image_ids, catIds=[category_id]))
            if not a.get("iscrowd", 0)
        ),
        "predicted_persons": len(box_results),
        **thresholds,
        "model_version": getattr(pipeline, "model_version", "unknown"),
        "trained_parts": sorted(getattr(pipeline, "trained_parts", ())),
        "seconds": round(seconds, 3),
        "images_per_second": round(len(image_ids) / seconds, 3) if seconds > 0 else None,
        "keypoints": score_results(source.coco, keypoint_results, "keypoints", image_ids),
        "bbox": score_results(source.coco, box_results, "bbox", image_ids),
    }
    log.info(
        "pipeline evaluated",
        images=len(image_ids),
        keypoint_ap=summary["keypoints"]["AP"],
        box_ap=summary["bbox"]["AP"],
    )
    return summary
