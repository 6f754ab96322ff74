"""The Pose Residual Network alone, fed ground-truth keypoints as its peaks (the MultiPoseNet paper reports
89.4 AP this way on COCO val).

For every image, every labelled joint of every (non-crowd) person becomes a candidate peak of score 1 and
every labelled person's ground-truth box a detection of score 1; PRN (or the nearest-peak baseline) picks one
peak per joint per box, and COCO keypoint AP (OKS) scores the poses. Two data sources:

* a COCO-format split (the synthetic val set), and
* real COCO poses (``model.data.coco_sp``) overlaid 2–4 to a scene with overlapping boxes, which is where
  assignment is hard and PRN has to know human pose structure. Only the held-out part of them
  (``split_real_annotations``: 20 % by annotation id) is scored by default: PRN training may use the rest
  (``PrnHyper.real_pose_fraction``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import numpy as np
import structlog

from model.evaluation.coco_eval import keypoint_result, load_ground_truth, person_category_id, score_results
from model.predictions import NUM_KEYPOINTS, Detections

log = structlog.get_logger()

MIN_OVERLAY_JOINTS = 8  # real poses with fewer labelled joints are not overlaid (too little structure)


def scored_annotations(gt: Any, image_id: int, category_id: int) -> list[dict[str, Any]]:
    """The persons COCOeval scores for keypoints: not crowd, at least one labelled joint."""
    annotations = gt.loadAnns(gt.getAnnIds(imgIds=[image_id], catIds=[category_id], iscrowd=None))
    return [a for a in annotations if not a.get("iscrowd", 0) and int(a.get("num_keypoints", 0)) > 0]


def ground_truth_detections(annotations: list[dict[str, Any]], width: int, height: int) -> Detections:
    """Ground-truth boxes (score 1) and every labelled joint of every person as a peak of score 1:
    peaks (17, P, 3) with slot p holding person p's joint (zeros where it is unlabelled)."""
    count = len(annotations)
    keypoints = np.zeros((count, NUM_KEYPOINTS, 3), np.float32)
    boxes = np.zeros((count, 4), np.float32)
    for index, annotation in enumerate(annotations):
        points = np.asarray(annotation["keypoints"], np.float32).reshape(NUM_KEYPOINTS, 3)
        labelled = points[:, 2] > 0
        keypoints[index, labelled, :2] = points[labelled, :2]
        keypoints[index, labelled, 2] = 1.0
        x, y, w, h = (float(v) for v in annotation["bbox"])
        boxes[index] = (x, y, x + w, y + h)
    return Detections(
        boxes=boxes,
        scores=np.ones(count, np.float32),
        peaks=np.ascontiguousarray(keypoints.transpose(1, 0, 2)),
        width=int(width),
        height=int(height),
    )


def evaluate_prn_on_ground_truth(
    prn: Any, gt: Any, image_ids: list[int] | None = None, batch_images: int = 64
) -> dict[str, Any]:
    """Keypoint AP of ``prn`` (a ``PoseResidualNetwork``) and of its nearest-peak baseline, with
    ground-truth peaks and boxes, on ``gt`` (pycocotools ``COCO``)."""
    category_id = person_category_id(gt)
    ids = sorted(gt.getImgIds() if image_ids is None else image_ids)
    detections: list[Detections] = []
    kept_ids: list[int] = []
    for image_id in ids:
        annotations = scored_annotations(gt, image_id, category_id)
        if not annotations:
            continue
        info = gt.imgs[image_id]
        detections.append(ground_truth_detections(annotations, info.get("width", 0), info.get("height", 0)))
        kept_ids.append(image_id)
    if not detections:
        raise ValueError("no image with a labelled person to evaluate the PRN on")
    was_training = prn.training
    prn.eval()
    scores: dict[str, dict[str, float]] = {}
    try:
        for name, use_network in (("network", True), ("baseline", False)):
            results: list[dict[str, Any]] = []
            for start in range(0, len(detections), batch_images):
                chunk = detections[start : start + batch_images]
                posed = prn.assign(chunk, use_network=use_network)
                for image_id, persons in zip(kept_ids[start : start + batch_images], posed, strict=True):
                    results.extend(keypoint_result(image_id, p.keypoints, 1.0, category_id) for p in persons)
            scores[name] = score_results(gt, results, "keypoints", kept_ids)
    finally:
        prn.train(was_training)
    persons = sum(d.num_persons for d in detections)
    return {
        "images": len(kept_ids),
        "persons": persons,
        "multi_person_images": sum(d.num_persons > 1 for d in detections),
        "network": scores["network"],
        "baseline": scores["baseline"],
    }


def evaluate_prn_split(
    prn: Any, data: str | Path, split: str = "val", max_images: int | None = None
) -> dict[str, Any]:
    """PRN with ground-truth peaks on a COCO-format split (images are not read)."""
    from model.train.coco import find_split

    annotation_file, _ = find_split(data, split)
    gt = load_ground_truth(annotation_file)
    ids = sorted(gt.getImgIds())
    summary = evaluate_prn_on_ground_truth(prn, gt, ids[:max_images] if max_images else ids)
    log.info("PRN on ground-truth peaks", data=str(data), split=split, ap=summary["network"]["AP"])
    return {"source": f"{annotation_file}", "split": split, **summary}


def _usable_real_poses(annotations: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Real annotations with enough labelled joints, all inside their own box (crops' coordinates)."""
    usable = []
    for annotation in annotations:
        points = np.asarray(annotation["keypoints"], np.float64).reshape(NUM_KEYPOINTS, 3)
        labelled = points[:, 2] > 0
        x, y, w, h = (float(v) for v in annotation["bbox"])
        if labelled.sum() < MIN_OVERLAY_JOINTS or w < 8 or h < 8:
            continue
        inside = (points[labelled, 0] >= x) & (points[labelled, 0] <= x + w)
        inside &= (points[labelled, 1] >= y) & (points[labelled, 1] <= y + h)
        if inside.all():
            usable.append(annotation)
    return usable


def overlay_real_poses(
    annotations: list[dict[str, Any]],
    scenes: int = 200,
    seed: int = 0,
    people: tuple[int, int] = (2, 4),
    height_range: tuple[float, float] = (160.0, 320.0),
    margin: float = 16.0,
) -> dict[str, Any]:
    """A COCO document of ``scenes`` images, each with ``people`` (min, max) real poses scaled to a random
    height and placed left to right, every box overlapping its neighbour by 30–75 % of its width.

    ``annotations`` are COCO person annotations (keypoints, bbox, area) in their own crop's pixels; the
    area (OKS's scale) is scaled with the pose. Each placed annotation's ``source_id`` is the ``id`` of the
    real annotation it came from (-1 when that had none)."""
    pool = _usable_real_poses(annotations)
    if len(pool) < people[1]:
        raise ValueError(f"only {len(pool)} real poses have ≥ {MIN_OVERLAY_JOINTS} joints inside their box")
    rng = np.random.default_rng(seed)
    images, placed = [], []
    for scene in range(scenes):
        count = int(rng.integers(people[0], people[1] + 1))
        chosen = [pool[i] for i in rng.choice(len(pool), size=count, replace=False)]
        cursor_x, boxes, poses, areas = 0.0, [], [], []
        source_ids = [int(a.get("id", -1)) for a in chosen]
        for index, annotation in enumerate(chosen):
            x, y, w, h = (float(v) for v in annotation["bbox"])
            scale = float(rng.uniform(*height_range)) / h
            left = cursor_x if index == 0 else cursor_x - float(rng.uniform(0.3, 0.75)) * boxes[-1][2]
            top = float(rng.uniform(-0.15, 0.15)) * height_range[1]
            points = np.asarray(annotation["keypoints"], np.float64).reshape(NUM_KEYPOINTS, 3).copy()
            labelled = points[:, 2] > 0
            points[labelled, 0] = (points[labelled, 0] - x) * scale + left
            points[labelled, 1] = (points[labelled, 1] - y) * scale + top
            points[~labelled] = 0.0
            boxes.append([left, top, w * scale, h * scale])
            poses.append(points)
            areas.append(float(annotation.get("area", w * h)) * scale * scale)
            cursor_x = left + w * scale
        shift_x = margin - min(b[0] for b in boxes)
        shift_y = margin - min(b[1] for b in boxes)
        width = int(np.ceil(max(b[0] + b[2] for b in boxes) + shift_x + margin))
        height = int(np.ceil(max(b[1] + b[3] for b in boxes) + shift_y + margin))
        image_id = scene + 1
        images.append({"id": image_id, "width": width, "height": height, "file_name": f"{image_id:06d}.jpg"})
        for box, points, area, source_id in zip(boxes, poses, areas, source_ids, strict=True):
            labelled = points[:, 2] > 0
            points[labelled, 0] += shift_x
            points[labelled, 1] += shift_y
            placed.append(
                {
                    "id": len(placed) + 1,
                    "image_id": image_id,
                    "category_id": 1,
                    "iscrowd": 0,
                    "bbox": [box[0] + shift_x, box[1] + shift_y, box[2], box[3]],
                    "area": area,
                    "num_keypoints": int(labelled.sum()),
                    "keypoints": [float(v) for v in points.reshape(-1)],
                    "source_id": int(source_id),
                }
            )
    return {
        "images": images,
        "annotations": placed,
        "categories": [{"id": 1, "name": "person", "supercategory": "person"}],
    }


def evaluate_prn_real_poses(
    prn: Any, scenes: int = 200, seed: int = 0, part: Literal["heldout", "train", "all"] = "heldout"
) -> dict[str, Any]:
    """PRN with ground-truth peaks on real COCO poses overlaid several to a box, drawn from ``part`` of them
    (default the held-out 20 %, which PRN training never sees); ``{"skipped": why}`` when the poses cannot
    be loaded (``model.data.coco_sp`` fetches them once with pip)."""
    if part not in ("heldout", "train", "all"):
        raise ValueError(f"part must be heldout, train or all, got {part!r}")
    try:
        from model.data.coco_sp import load_coco_sp_annotations, split_real_annotations

        annotations = load_coco_sp_annotations()["annotations"]
    except Exception as exc:  # no module, no registry, damaged wheel: the rest of the eval still runs
        reason = f"real COCO poses unavailable ({type(exc).__name__}: {exc})"
        log.warning("skipping PRN on real COCO poses", reason=reason)
        return {"skipped": reason}
    train, heldout = split_real_annotations(annotations)
    chosen = {"heldout": heldout, "train": train, "all": list(annotations)}[part]
    gt = load_ground_truth(overlay_real_poses(chosen, scenes=scenes, seed=seed))
    summary = evaluate_prn_on_ground_truth(prn, gt)
    log.info("PRN on overlaid real COCO poses", scenes=scenes, part=part, ap=summary["network"]["AP"])
    described = {
        "heldout": "the held-out 20 % (by annotation-id hash; never used for PRN training)",
        "train": "the 80 % training part",
        "all": "all of them",
    }[part]
    return {
        "source": f"coco_sp (pocketpose wheel): real COCO val2017 poses, {described}, 2-4 overlaid per scene",
        "part": part,
        "real_poses": len(chosen),
        "usable_real_poses": len(_usable_real_poses(chosen)),
        "seed": seed,
        **summary,
    }
