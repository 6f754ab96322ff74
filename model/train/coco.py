"""COCO-format person-keypoint datasets: real COCO 2017 and the built-in synthetic set.

Real COCO: ``ROOT/annotations/person_keypoints_{train,val}2017.json`` + ``ROOT/{train,val}2017/``.
Synthetic (``posestream data synth --out DIR``): ``DIR/annotations/person_keypoints_{train,val}.json``;
its images live in whichever of a few usual folders holds the first ``file_name`` (resolved once).

An item is one image with all of its person annotations (numpy, original pixels); augmentation and
targets are applied by the wrappers in ``augment.py``/``targets.py``.
"""

from __future__ import annotations

import contextlib
import io
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import structlog

log = structlog.get_logger()

NUM_JOINTS = 17


@dataclass
class Person:
    """One person annotation; ``keypoints`` (17, 3): x, y, v (COCO: 0 unlabelled, 1 occluded, 2 visible)."""

    keypoints: np.ndarray
    box: np.ndarray  # (4,) x1, y1, x2, y2
    iscrowd: bool
    activity: str | None = None
    annotation_id: int = -1

    @property
    def num_keypoints(self) -> int:
        return int((self.keypoints[:, 2] > 0).sum())

    @property
    def labelled(self) -> bool:
        """People the heatmap loss may learn from; the others are masked out by W."""
        return not self.iscrowd and self.num_keypoints > 0


@dataclass
class ImageRecord:
    image: np.ndarray  # (H, W, 3) uint8 BGR
    people: list[Person]
    ignore_mask: np.ndarray  # (H, W) uint8, 1 where the heatmap loss must not look (W = 0)
    image_id: int = -1
    file_name: str = ""
    extra: dict[str, Any] = field(default_factory=dict)


def find_split(root: str | Path, split: str) -> tuple[Path, Path]:
    """(annotation json, image folder) of ``split`` ("train"/"val") under a COCO or synthetic root."""
    root = Path(root)
    candidates = [
        root / "annotations" / f"person_keypoints_{split}2017.json",
        root / "annotations" / f"person_keypoints_{split}.json",
    ]
    annotation_file = next((path for path in candidates if path.is_file()), None)
    if annotation_file is None:
        raise ValueError(
            f"no person-keypoint annotations for split {split!r} under {root}: tried {candidates}"
        )
    return annotation_file, root


def _image_folder_candidates(root: Path, split: str) -> list[Path]:
    return [
        root / f"{split}2017",
        root / "images" / split,
        root / split,
        root / "images",
        root,
    ]


class CocoKeypoints:
    """Images with people from a COCO-format person-keypoint file (pycocotools does the indexing)."""

    def __init__(
        self,
        annotation_file: str | Path,
        image_root: str | Path,
        split: str = "train",
        require_labelled: bool = True,
        activities: tuple[str, ...] | None = None,
        max_images: int | None = None,
        include_empty: bool = False,
    ) -> None:
        from pycocotools.coco import COCO  # heavy-ish import; only when a dataset is built

        self.annotation_file = Path(annotation_file)
        if not self.annotation_file.is_file():
            raise ValueError(f"annotation file not found: {self.annotation_file}")
        with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints its progress
            self.coco = COCO(str(self.annotation_file))
        person_ids = self.coco.getCatIds(catNms=["person"]) or sorted(self.coco.cats)
        self.category_id = person_ids[0]
        # include_empty: also the images with no person at all (negatives for the detector)
        ids = sorted(
            self.coco.getImgIds() if include_empty else self.coco.getImgIds(catIds=[self.category_id])
        )
        if require_labelled:
            ids = [i for i in ids if any(_labelled(a) for a in self._annotations(i))]
        if not ids:
            raise ValueError(f"{self.annotation_file} holds no image with a labelled person")
        self.image_ids = ids[:max_images] if max_images else ids
        self.activities = activities
        self.image_dir = self._resolve_image_dir(Path(image_root), split)

    @classmethod
    def from_root(cls, root: str | Path, split: str = "train", **kwargs: Any) -> CocoKeypoints:
        annotation_file, image_root = find_split(root, split)
        return cls(annotation_file, image_root, split=split, **kwargs)

    def _resolve_image_dir(self, root: Path, split: str) -> Path:
        file_name = self.coco.imgs[self.image_ids[0]]["file_name"]
        for folder in _image_folder_candidates(root, split):
            if (folder / file_name).is_file():
                return folder
        raise ValueError(
            f"image {file_name!r} not found under {root} (tried {_image_folder_candidates(root, split)})"
        )

    def _annotations(self, image_id: int) -> list[dict[str, Any]]:
        return self.coco.loadAnns(
            self.coco.getAnnIds(imgIds=[image_id], catIds=[self.category_id], iscrowd=None)
        )

    def __len__(self) -> int:
        return len(self.image_ids)

    def load_image(self, index: int) -> np.ndarray:
        info = self.coco.imgs[self.image_ids[index]]
        path = self.image_dir / info["file_name"]
        image = cv2.imread(str(path), cv2.IMREAD_COLOR)
        if image is None:
            raise ValueError(f"cannot read image {path}")
        return image

    def people(self, index: int) -> list[Person]:
        return [_person(a) for a in self._annotations(self.image_ids[index])]

    def ignore_mask(self, index: int, height: int, width: int) -> np.ndarray:
        """W = 0 on crowds and on people without keypoint labels (their segmentation, else their box)."""
        mask = np.zeros((height, width), np.uint8)
        for annotation in self._annotations(self.image_ids[index]):
            if _labelled(annotation):
                continue
            if annotation.get("segmentation"):
                mask |= self.coco.annToMask(annotation).astype(np.uint8)[:height, :width]
            else:
                x, y, w, h = (int(round(v)) for v in annotation["bbox"])
                mask[max(y, 0) : max(y + h, 0), max(x, 0) : max(x + w, 0)] = 1
        return mask

    def __getitem__(self, index: int) -> ImageRecord:
        if not 0 <= index < len(self):
            raise IndexError(index)
        image = self.load_image(index)
        height, width = image.shape[:2]
        info = self.coco.imgs[self.image_ids[index]]
        return ImageRecord(
            image=image,
            people=self.people(index),
            ignore_mask=self.ignore_mask(index, height, width),
            image_id=self.image_ids[index],
            file_name=info["file_name"],
        )

    def activity_people(self) -> list[Person]:
        """Every labelled person carrying an ``activity`` field (synthetic set, or a poses file)."""
        return [p for i in range(len(self)) for p in self.people(i) if p.labelled and p.activity is not None]


def _labelled(annotation: dict[str, Any]) -> bool:
    return not annotation.get("iscrowd", 0) and int(annotation.get("num_keypoints", 0)) > 0


def _person(annotation: dict[str, Any]) -> Person:
    raw = annotation.get("keypoints") or [0.0] * (3 * NUM_JOINTS)
    keypoints = np.asarray(raw, np.float32).reshape(NUM_JOINTS, 3)
    # COCO stores meaningless coordinates for v = 0; make them harmless
    keypoints[keypoints[:, 2] <= 0] = 0.0
    x, y, w, h = (float(v) for v in annotation["bbox"])
    activity = annotation.get("activity")
    return Person(
        keypoints=keypoints,
        box=np.array([x, y, x + w, y + h], np.float32),
        iscrowd=bool(annotation.get("iscrowd", 0)),
        activity=str(activity) if activity is not None else None,
        annotation_id=int(annotation.get("id", -1)),
    )
