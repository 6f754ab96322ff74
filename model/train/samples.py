"""PRN and activity training samples, and the "labelled image folder → poses" path of the seed.

PRN (as the seed and the MultiPoseNet code): from ground-truth keypoints only. For each labelled
person, its box enlarged by ``prn_box_enlarge`` is the grid's frame; the input is every labelled joint of
*every* person that falls inside it, rendered by ``model.prn.render_prn_input`` (the very function the
PRN stage uses at inference); the target is the same rendering of that person's own joints, normalised to
a distribution per joint like the PRN's softmax output. ``assignment_accuracy`` measures what the PRN is
for: the share of joints given to their own person, with ground-truth peaks and boxes.

Activity: ``model.activity.encode_poses`` of a person's keypoints in their box (as at inference) with the
index of their label, either from a COCO-format file's ``activity`` field (the synthetic set) or from a
poses file that ``extract_poses`` writes by running the pose model over ``FOLDER/<activity>/*.jpg``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import structlog
import torch
from torch.utils.data import Dataset

from model.activity import encode_poses
from model.config import ModelConfig
from model.predictions import Detections
from model.prn import PoseResidualNetwork, as_distribution, enlarge_boxes, peaks_on_grid, render_prn_input
from model.train.coco import CocoKeypoints, Person

log = structlog.get_logger()

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp")


def prn_sample(people: list[Person], index: int, config: ModelConfig) -> tuple[torch.Tensor, torch.Tensor]:
    """(input, target), each (17, grid_h, grid_w), for person ``index`` among ``people`` of one image."""
    labelled = [p for p in people if p.labelled]
    if not people[index].labelled:
        raise ValueError("PRN samples are made for labelled people only")
    box = enlarge_boxes(torch.from_numpy(people[index].box[None].copy()), config.prn_box_enlarge)  # (1, 4)
    everyone = _as_peaks(labelled)  # (17, P, 3)
    own = _as_peaks([people[index]])  # (17, 1, 3)
    # the target is a distribution per joint, as the PRN's softmax output (see PoseResidualNetwork.loss)
    return render_prn_input(everyone, box, config)[0], as_distribution(render_prn_input(own, box, config))[0]


def ground_truth_detections(people: list[Person]) -> tuple[Detections, np.ndarray]:
    """The labelled people of one image as the stage's output, with their own keypoints as the only peaks
    (score 1): Detections (boxes of score 1, peaks (17, P, 3)) and which (P, 17) joints are labelled."""
    labelled = [p for p in people if p.labelled]
    boxes = (
        np.stack([p.box for p in labelled]).astype(np.float32) if labelled else np.zeros((0, 4), np.float32)
    )
    peaks = _as_peaks(labelled).numpy() if labelled else np.zeros((17, 0, 3), np.float32)
    detections = Detections(boxes, np.ones(len(labelled), np.float32), peaks, 0, 0)
    return detections, peaks[..., 2].T > 0


def assignment_accuracy(
    prn: PoseResidualNetwork, images: list[list[Person]], use_network: bool = True
) -> dict[str, float]:
    """Joint assignment with ground-truth peaks and boxes: the share of labelled joints given their own
    person's point ("all"), and the same over the joints whose (enlarged) box also holds another person's
    point of that joint ("ambiguous", where assignment is hard)."""
    was_training = prn.training
    prn.eval()
    right = total = right_ambiguous = total_ambiguous = 0
    try:
        for people in images:
            detections, labelled = ground_truth_detections(people)
            if detections.num_persons == 0:
                continue
            [persons] = prn.assign([detections], use_network=use_network)
            grid_boxes = enlarge_boxes(torch.from_numpy(detections.boxes), prn.config.prn_box_enlarge)
            _, inside = peaks_on_grid(torch.from_numpy(detections.peaks), grid_boxes, prn.config.prn_grid)
            inside = inside.numpy()  # (N, 17, P)
            own = detections.peaks.transpose(1, 0, 2)[..., :2]  # (P, 17, 2)
            chosen = np.stack([p.keypoints[:, :2] for p in persons])  # (P, 17, 2)
            correct = np.all(np.isclose(chosen, own, atol=1e-3), axis=-1) & labelled  # (P, 17)
            others = inside.sum(-1) - inside[np.arange(len(persons)), :, np.arange(len(persons))]
            ambiguous = labelled & (others > 0)
            right, total = right + int(correct.sum()), total + int(labelled.sum())
            right_ambiguous += int((correct & ambiguous).sum())
            total_ambiguous += int(ambiguous.sum())
    finally:
        prn.train(was_training)
    return {
        "all": right / max(total, 1),
        "ambiguous": right_ambiguous / max(total_ambiguous, 1),
        "joints": float(total),
        "ambiguous_joints": float(total_ambiguous),
    }


def _as_peaks(people: list[Person]) -> torch.Tensor:
    """People's keypoints as the stage's peaks tensor (17, P, 3): x, y, score = 1 where labelled."""
    points = torch.from_numpy(np.stack([p.keypoints for p in people]).copy()).float()  # (P, 17, 3)
    points[..., 2] = (points[..., 2] > 0).float()
    return points.transpose(0, 1).contiguous()


class PrnTrainingSet(Dataset):
    """One item per labelled person of a COCO-format set; needs the annotations only, no image."""

    def __init__(self, source: CocoKeypoints, config: ModelConfig) -> None:
        self.config = config
        self.people = [source.people(i) for i in range(len(source))]
        self.index = [
            (i, n) for i, people in enumerate(self.people) for n, p in enumerate(people) if p.labelled
        ]
        if not self.index:
            raise ValueError("no labelled person to train the PRN on")

    def __len__(self) -> int:
        return len(self.index)

    def __getitem__(self, item: int) -> tuple[torch.Tensor, torch.Tensor]:
        image, person = self.index[item]
        return prn_sample(self.people[image], person, self.config)


class ActivityPoseSet(Dataset):
    """Encoded poses (N, 51) and activity indices (N,), ready for an MLP."""

    def __init__(
        self, keypoints: np.ndarray, boxes: np.ndarray, labels: list[str], activities: tuple[str, ...]
    ):
        unknown = sorted(set(labels) - set(activities))
        if unknown:
            raise ValueError(f"activity labels {unknown} are not among the model's activities {activities}")
        if not labels:
            raise ValueError("no labelled pose for the activity classifier")
        self.activities = activities
        self.features = encode_poses(
            torch.from_numpy(np.asarray(keypoints, np.float32)),
            torch.from_numpy(np.asarray(boxes, np.float32)),
        )
        self.labels = torch.tensor([activities.index(label) for label in labels], dtype=torch.int64)

    @classmethod
    def from_coco(cls, source: CocoKeypoints, activities: tuple[str, ...]) -> ActivityPoseSet:
        people = source.activity_people()
        if not people:
            raise ValueError(f"{source.annotation_file} has no person with an 'activity' field")
        return cls(
            np.stack([p.keypoints for p in people]),
            np.stack([p.box for p in people]),
            [p.activity for p in people],
            activities,
        )

    @classmethod
    def from_poses_file(cls, path: str | Path, activities: tuple[str, ...]) -> ActivityPoseSet:
        """Read what ``extract_poses`` wrote."""
        poses = json.loads(Path(path).read_text())["poses"]
        if not poses:
            raise ValueError(f"{path} holds no pose")
        return cls(
            np.array([p["keypoints"] for p in poses], np.float32).reshape(-1, 17, 3),
            np.array([p["bbox"] for p in poses], np.float32).reshape(-1, 4),
            [p["activity"] for p in poses],
            activities,
        )

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self.features[index], self.labels[index]

    def split(
        self, val_fraction: float, seed: int = 0
    ) -> tuple[torch.utils.data.Subset, torch.utils.data.Subset]:
        """Stratified-free random split (train, val); val gets at least one sample when fraction > 0."""
        order = torch.randperm(len(self), generator=torch.Generator().manual_seed(seed)).tolist()
        count = max(1, round(len(self) * val_fraction)) if val_fraction > 0 and len(self) > 1 else 0
        return torch.utils.data.Subset(self, order[count:]), torch.utils.data.Subset(self, order[:count])


def extract_poses(
    images: str | Path,
    checkpoint: str | Path | None,
    out: str | Path,
    device: str | None = None,
    min_score: float = 0.0,
    min_joints: int = 5,
) -> dict[str, Any]:
    """Run the pose model over ``images/<activity>/*`` and write ``out`` (JSON) with one entry per person:
    image path, activity (the folder name), bbox, score, keypoints (17×3). Returns a summary."""
    from tqdm import tqdm

    from model.pipeline import PosePipeline

    root = Path(images)
    folders = sorted(p for p in root.iterdir() if p.is_dir()) if root.is_dir() else []
    files = [
        (f, folder.name)
        for folder in folders
        for f in sorted(folder.rglob("*"))
        if f.suffix.lower() in IMAGE_SUFFIXES
    ]
    if not files:
        raise ValueError(f"no images under {root}/<activity>/ (folders named after the activities)")
    pipeline = PosePipeline.load(checkpoint, device=device)
    poses: list[dict[str, Any]] = []
    skipped = 0
    for path, activity in tqdm(files, desc="poses", unit="img"):
        image = cv2.imread(str(path), cv2.IMREAD_COLOR)
        if image is None:
            skipped += 1
            continue
        for person in pipeline.predict([image])[0]:
            if person.score < min_score or int((person.keypoints[:, 2] > 0).sum()) < min_joints:
                continue
            poses.append(
                {
                    "image": str(path.relative_to(root)),
                    "activity": activity,
                    "bbox": [float(v) for v in person.bbox],
                    "score": float(person.score),
                    "keypoints": np.asarray(person.keypoints, np.float32).round(2).tolist(),
                }
            )
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    summary = {
        "images": len(files),
        "unreadable": skipped,
        "poses": len(poses),
        "per_activity": {a: sum(p["activity"] == a for p in poses) for a in sorted({a for _, a in files})},
        "model_version": pipeline.model_version,
    }
    out.write_text(json.dumps({"summary": summary, "poses": poses}))
    log.info("poses extracted", out=str(out), **{k: v for k, v in summary.items() if k != "per_activity"})
    return summary
