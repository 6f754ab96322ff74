"""Writes a synthetic people dataset in exactly the COCO person-keypoints format.

Layout::

    DIR/annotations/person_keypoints_train.json
    DIR/annotations/person_keypoints_val.json
    DIR/images/train/000000000001.jpg
    DIR/images/val/000000000010.jpg

Image ``i`` is drawn from ``SeedSequence([seed, i])`` alone, so output is byte-identical for a
seed whatever the number of worker processes, and the JSON key order is fixed.

``empty_fraction`` of the train images hold nobody (drawn backgrounds and noise, drawn from
``SeedSequence([seed, i, 1])``): images without annotations, as a real camera's feed has; the detector
learns from them that texture is not a person. Val images always hold people.

``pose_prior="coco-sp"`` re-poses each person's arms and torso from real COCO poses
(``model.data.pose_prior``); ``None`` keeps the built-in poses, byte for byte.
"""

from __future__ import annotations

import json
import multiprocessing
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import structlog
from tqdm import tqdm

from model.data.backgrounds import EMPTY_FRAME_KINDS, empty_frame
from model.data.pose_prior import POSE_PRIORS, pose_sampler
from model.data.scene import PersonTruth, annotation_is_usable, render_scene, sample_scene
from model.data.skeleton import COCO_KEYPOINT_NAMES, COCO_SKELETON, DEFAULT_ACTIVITIES

log = structlog.get_logger()

SPLITS = ("train", "val")
JPEG_QUALITY = 92
IMAGE_FORMATS = ("jpg", "png")


def person_category() -> dict:
    """COCO's person category: keypoint names and the 1-based skeleton."""
    return {
        "supercategory": "person",
        "id": 1,
        "name": "person",
        "keypoints": list(COCO_KEYPOINT_NAMES),
        "skeleton": [[a + 1, b + 1] for a, b in COCO_SKELETON],
    }


def encode_image(img: np.ndarray, image_format: str) -> bytes:
    """Deterministic encoding (fixed JPEG quality, no timestamps in either format)."""
    if image_format == "jpg":
        ok, buf = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
    elif image_format == "png":
        ok, buf = cv2.imencode(".png", img, [cv2.IMWRITE_PNG_COMPRESSION, 3])
    else:
        raise ValueError(f"image_format must be one of {IMAGE_FORMATS}, got {image_format!r}")
    if not ok:
        raise RuntimeError(f"OpenCV could not encode a {image_format} image")
    return buf.tobytes()


def truth_to_annotation(truth: PersonTruth, ann_id: int, image_id: int) -> dict:
    """One COCO annotation (plus the ``activity`` label; ``track_id`` only matters for sequences)."""
    keypoints: list[float | int] = []
    for x, y, v in truth.keypoints:
        keypoints.extend((round(float(x), 2), round(float(y), 2), int(v)))
    return {
        "id": ann_id,
        "image_id": image_id,
        "category_id": 1,
        "segmentation": truth.segmentation,
        "area": round(truth.area, 2),
        "bbox": [round(float(v), 2) for v in truth.bbox],
        "iscrowd": 0,
        "keypoints": keypoints,
        "num_keypoints": truth.num_keypoints,
        "activity": truth.activity,
    }


def render_example(
    seed: int, index: int, width: int, height: int, max_people: int = 8, pose_prior: str | None = None
):
    """Image ``index`` of the dataset for ``seed``: (BGR image, usable ground truths)."""
    rng = np.random.default_rng(np.random.SeedSequence([seed, index]))
    settings, people = sample_scene(rng, width, height, max_people, pose_sampler(pose_prior))
    img, truths = render_scene(rng, width, height, settings, people)
    return img, [t for t in truths if annotation_is_usable(t)]


def render_empty_example(seed: int, index: int, width: int, height: int) -> np.ndarray:
    """Image ``index`` of the dataset for ``seed`` when it is one of the empty ones."""
    rng = np.random.default_rng(np.random.SeedSequence([seed, index, 1]))
    return empty_frame(rng, width, height, index % EMPTY_FRAME_KINDS)


def empty_indices(images: int, empty_fraction: float, val: set[int]) -> set[int]:
    """Evenly spread train images that hold nobody (never a val image)."""
    if not 0.0 <= empty_fraction < 1.0:
        raise ValueError(f"empty_fraction must be in [0, 1), got {empty_fraction}")
    train = [index for index in range(images) if index not in val]
    count = min(round(len(train) * empty_fraction), max(len(train) - 1, 0))
    if count == 0:
        return set()
    return {train[int((k + 0.5) * len(train) / count)] for k in range(count)}


def val_indices(images: int, val_fraction: float) -> set[int]:
    """Evenly spread validation images (at least one when a fraction is asked and there are 2+ images)."""
    if not 0.0 <= val_fraction < 1.0:
        raise ValueError(f"val_fraction must be in [0, 1), got {val_fraction}")
    if val_fraction == 0.0 or images < 2:
        return set()
    count = min(max(1, round(images * val_fraction)), images - 1)
    return {int((k + 0.5) * images / count) for k in range(count)}


@dataclass(frozen=True)
class _Job:
    seed: int
    width: int
    height: int
    max_people: int
    image_format: str
    pose_prior: str | None
    empty: frozenset[int] = frozenset()

    def __call__(self, index: int) -> tuple[int, bytes, list[PersonTruth]]:
        if index in self.empty:
            img = render_empty_example(self.seed, index, self.width, self.height)
            return index, encode_image(img, self.image_format), []
        img, truths = render_example(
            self.seed, index, self.width, self.height, self.max_people, self.pose_prior
        )
        return index, encode_image(img, self.image_format), truths


def generate_dataset(
    out_dir: str | Path,
    images: int,
    seed: int,
    val_fraction: float = 0.1,
    size: tuple[int, int] = (480, 480),
    max_people: int = 8,
    image_format: str = "jpg",
    workers: int = 1,
    pose_prior: str | None = None,
    progress: bool = True,
    empty_fraction: float = 0.0,
) -> dict:
    """Render ``images`` pictures and write COCO JSON for the train/val splits; returns a summary."""
    if images < 1:
        raise ValueError(f"images must be at least 1, got {images}")
    width, height = size
    if width < 32 or height < 32:
        raise ValueError(f"size must be at least 32x32, got {width}x{height}")
    if image_format not in IMAGE_FORMATS:
        raise ValueError(f"image_format must be one of {IMAGE_FORMATS}, got {image_format!r}")
    if pose_prior is not None and pose_prior not in POSE_PRIORS:
        raise ValueError(f"unknown pose prior {pose_prior!r}; expected one of {POSE_PRIORS}")
    if not 1 <= max_people <= 14:
        raise ValueError(f"max_people must be in 1..14, got {max_people}")
    pose_sampler(pose_prior)  # load (and on first use download) a real-pose prior before any work
    out = Path(out_dir)
    for split in SPLITS:
        (out / "images" / split).mkdir(parents=True, exist_ok=True)
    (out / "annotations").mkdir(parents=True, exist_ok=True)
    val = val_indices(images, val_fraction)
    empty = empty_indices(images, empty_fraction, val)
    datasets = {split: {"images": [], "annotations": []} for split in SPLITS}
    activity_counts: Counter[str] = Counter()
    job = _Job(seed, width, height, max_people, image_format, pose_prior, frozenset(empty))
    started = time.perf_counter()
    ann_id = 0
    bar = tqdm(total=images, desc="synth", unit="img", disable=not progress)
    pool = multiprocessing.get_context("spawn").Pool(workers) if workers > 1 else None
    try:
        results = pool.imap(job, range(images), chunksize=4) if pool else map(job, range(images))
        for index, encoded, truths in results:  # in index order either way
            split = "val" if index in val else "train"
            image_id = index + 1
            file_name = f"{image_id:012d}.{image_format}"
            (out / "images" / split / file_name).write_bytes(encoded)
            datasets[split]["images"].append(
                {"id": image_id, "file_name": file_name, "width": width, "height": height}
            )
            for truth in truths:
                ann_id += 1
                datasets[split]["annotations"].append(truth_to_annotation(truth, ann_id, image_id))
                activity_counts[truth.activity] += 1
            bar.update(1)
    finally:
        bar.close()
        if pool is not None:
            pool.close()
            pool.join()
    for split in SPLITS:
        document = {
            "info": {
                "description": "posestream synthetic people",
                "version": "1",
                "seed": seed,
                "activities": list(DEFAULT_ACTIVITIES),
                "pose_prior": pose_prior or "synthetic",
            },
            "licenses": [],
            "images": datasets[split]["images"],
            "annotations": datasets[split]["annotations"],
            "categories": [person_category()],
        }
        path = out / "annotations" / f"person_keypoints_{split}.json"
        path.write_text(json.dumps(document, separators=(",", ":"), ensure_ascii=True) + "\n")
    seconds = time.perf_counter() - started
    summary = {
        "out": str(out),
        "images": {split: len(datasets[split]["images"]) for split in SPLITS},
        "annotations": {split: len(datasets[split]["annotations"]) for split in SPLITS},
        "empty_images": len(empty),
        "activities": {name: activity_counts[name] for name in DEFAULT_ACTIVITIES},
        "seconds": round(seconds, 3),
        "images_per_second": round(images / max(seconds, 1e-9), 2),
    }
    log.info("synthetic dataset written", **summary)
    return summary
