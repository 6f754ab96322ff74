"""PRN and activity training samples, and the "labelled image folder → poses" path of the seed.

PRN (as the seed and the MultiPoseNet code): from ground-truth keypoints only. For each labelled
person, its box enlarged by ``prn_box_enlarge`` is the grid's frame; the input is every labelled joint of
*every* person that falls inside it, rendered by ``model.prn.render_prn_input`` (the very function the
PRN stage uses at inference); the target is the same rendering of that person's own joints, normalised to
a distribution per joint like the PRN's softmax output. ``assignment_accuracy`` measures what the PRN is
for: the share of joints given to their own person, with ground-truth peaks and boxes.

PRN on real pose structure too (``real_pose_fraction``): real COCO poses of the *train* part of
``model.data.coco_sp`` (``split_real_annotations``; the held-out part is kept for the figure) overlaid 2–4
to a scene with overlapping boxes (``model.evaluation.prn_eval.overlay_real_poses``), made into PRN
samples the same way.

Activity: ``model.activity.encode_poses`` of a person's keypoints in their box (as at inference) with the
index of their label, from a COCO-format file's ``activity`` field (ground-truth poses of the synthetic set),
from a poses file (``extract_poses``: the pose model over ``FOLDER/<activity>/*.jpg``;
``extract_activity_poses``: the trained pipeline over a labelled synthetic split, each predicted person
matched one-to-one to a ground-truth person whose label it takes), or both concatenated. Every sample carries
its source ("ground_truth" / "predicted") and a group (its image), and the train/val split is by group, so
a person's ground-truth and predicted pose never fall on both sides.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import structlog
import torch
from torch.utils.data import Dataset

from model.activity import encode_poses
from model.config import ModelConfig
from model.predictions import FLIP_PAIRS, Detections, PersonPrediction
from model.prn import PoseResidualNetwork, as_distribution, enlarge_boxes, peaks_on_grid, render_prn_input
from model.train.coco import CocoKeypoints, Person
from model.train.prn_noise import PrnNoise, mirrored_channels, noisy_people

log = structlog.get_logger()

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp")


def prn_sample(
    people: list[Person], index: int, config: ModelConfig, noise: PrnNoise | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """(input, target), each (17, grid_h, grid_w), for person ``index`` among ``people`` of one image;
    ``noise``: inputs perturbed as the backbone's peaks are (``model.train.prn_noise``)."""
    if not people[index].labelled:
        raise ValueError("PRN samples are made for labelled people only")
    own_box = people[index].box
    if noise is not None and noise.active:
        people, own_box = noisy_people(people, index, noise)
    box = enlarge_boxes(torch.from_numpy(own_box[None].copy()), config.prn_box_enlarge)  # (1, 4)
    labelled = [p for p in people if p.labelled]
    everyone = _as_peaks(labelled) if labelled else torch.zeros((17, 0, 3))  # (17, P, 3)
    if noise is not None and noise.mirror_prob > 0:
        everyone = mirrored_channels(everyone, noise)  # (17, 2P, 3)
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


SYNTHETIC, REAL = "synthetic", "real"


class PrnTrainingSet(Dataset):
    """One item per labelled person of a COCO-format set; needs the annotations only, no image.

    With ``real_annotations`` (COCO person annotations in crop pixels, e.g. the train part of
    ``model.data.coco_sp.split_real_annotations``) and ``real_pose_fraction`` f in (0, 1), real poses
    (and, with ``mirror_real_poses``, their mirror images) overlaid 2–4 to a scene are added until they
    are a share f of the items (``round(f / (1 - f) · synthetic)`` persons; the scenes are fixed by
    ``seed``). ``sources[i]`` says which an item is ("synthetic" / "real"); the people of a real scene
    carry the real annotation's id as ``annotation_id``. ``noise``: each item's input drawn anew as the
    backbone's peaks look (``model.train.prn_noise``; None: clean ground truth)."""

    def __init__(
        self,
        source: CocoKeypoints,
        config: ModelConfig,
        real_annotations: Sequence[dict[str, Any]] | None = None,
        real_pose_fraction: float = 0.0,
        seed: int = 0,
        mirror_real_poses: bool = True,
        noise: PrnNoise | None = None,
    ) -> None:
        if not 0.0 <= real_pose_fraction < 1.0:
            raise ValueError(f"real_pose_fraction must be in [0, 1), got {real_pose_fraction}")
        self.config = config
        self.noise = noise
        self.people = [source.people(i) for i in range(len(source))]
        self.index = [
            (i, n) for i, people in enumerate(self.people) for n, p in enumerate(people) if p.labelled
        ]
        if not self.index:
            raise ValueError("no labelled person to train the PRN on")
        self.sources = [SYNTHETIC] * len(self.index)
        if real_pose_fraction > 0:
            if not real_annotations:
                raise ValueError("real_pose_fraction > 0 needs real pose annotations")
            wanted = round(real_pose_fraction / (1.0 - real_pose_fraction) * len(self.index))
            scenes = real_pose_scenes(real_annotations, wanted, seed, mirror=mirror_real_poses)
            first = len(self.people)
            self.people.extend(scenes)
            real_index = [(first + i, n) for i, people in enumerate(scenes) for n in range(len(people))]
            self.index.extend(real_index[:wanted])
            self.sources.extend([REAL] * min(wanted, len(real_index)))

    def __len__(self) -> int:
        return len(self.index)

    def __getitem__(self, item: int) -> tuple[torch.Tensor, torch.Tensor]:
        image, person = self.index[item]
        return prn_sample(self.people[image], person, self.config, self.noise)


def real_pose_scenes(
    annotations: Sequence[dict[str, Any]], persons: int, seed: int = 0, mirror: bool = True
) -> list[list[Person]]:
    """At least ``persons`` people in scenes of 2–4 real poses with overlapping boxes (``overlay_real_poses``,
    the evaluation's own layout), as ``Person`` lists; ``annotation_id`` = the real annotation's id.
    ``mirror``: the pool also holds every pose mirrored (left/right joints swapped), twice the poses."""
    from model.evaluation.prn_eval import overlay_real_poses

    if persons <= 0:
        return []
    pool = list(annotations) + ([mirrored_annotation(a) for a in annotations] if mirror else [])
    document = overlay_real_poses(pool, scenes=math.ceil(persons / 2), seed=seed)
    scenes: dict[int, list[Person]] = {image["id"]: [] for image in document["images"]}
    for annotation in document["annotations"]:
        keypoints = np.asarray(annotation["keypoints"], np.float32).reshape(17, 3)
        x, y, w, h = (float(v) for v in annotation["bbox"])
        scenes[annotation["image_id"]].append(
            Person(
                keypoints=keypoints,
                box=np.array([x, y, x + w, y + h], np.float32),
                iscrowd=False,
                annotation_id=int(annotation["source_id"]),
            )
        )
    return list(scenes.values())


def mirrored_annotation(annotation: dict[str, Any]) -> dict[str, Any]:
    """A COCO person annotation mirrored about its box's vertical centre line, left/right joints swapped
    (a real pose seen in a mirror is another real pose); the same ``id``."""
    points = np.asarray(annotation["keypoints"], np.float64).reshape(17, 3).copy()
    x, _, w, _ = (float(v) for v in annotation["bbox"])
    labelled = points[:, 2] > 0
    points[labelled, 0] = 2 * x + w - points[labelled, 0]
    for left, right in FLIP_PAIRS:
        points[[left, right]] = points[[right, left]]
    return {**annotation, "keypoints": [float(v) for v in points.reshape(-1)]}


GROUND_TRUTH, PREDICTED = "ground_truth", "predicted"


class ActivityPoseSet(Dataset):
    """Encoded poses (N, 51) and activity indices (N,), ready for an MLP; ``sources[i]`` ("ground_truth",
    "predicted") and ``groups[i]`` (the sample's image: ``<split>/<image id>`` or ``photo/<path>``) per
    sample. Without groups, each sample is its own group."""

    def __init__(
        self,
        keypoints: np.ndarray,
        boxes: np.ndarray,
        labels: list[str],
        activities: tuple[str, ...],
        sources: list[str] | None = None,
        groups: list[str] | None = None,
    ):
        unknown = sorted(set(labels) - set(activities))
        if unknown:
            raise ValueError(f"activity labels {unknown} are not among the model's activities {activities}")
        if not labels:
            raise ValueError("no labelled pose for the activity classifier")
        for name, values in (("sources", sources), ("groups", groups)):
            if values is not None and len(values) != len(labels):
                raise ValueError(f"{len(values)} {name} for {len(labels)} poses")
        self.activities = activities
        self.features = encode_poses(
            torch.from_numpy(np.asarray(keypoints, np.float32)),
            torch.from_numpy(np.asarray(boxes, np.float32)),
        )
        self.labels = torch.tensor([activities.index(label) for label in labels], dtype=torch.int64)
        self.sources = list(sources) if sources is not None else [PREDICTED] * len(labels)
        self.groups = list(groups) if groups is not None else [f"sample/{i}" for i in range(len(labels))]

    @classmethod
    def from_coco(
        cls, source: CocoKeypoints, activities: tuple[str, ...], split: str | None = None
    ) -> ActivityPoseSet:
        """Ground-truth poses of every labelled person with an ``activity`` field, grouped by image
        (``<split>/<image id>``; split: from the annotation file's name when not given)."""
        split = split or split_name(source.annotation_file)
        people, groups = [], []
        for index, image_id in enumerate(source.image_ids):
            for person in source.people(index):
                if person.labelled and person.activity is not None:
                    people.append(person)
                    groups.append(f"{split}/{image_id}")
        if not people:
            raise ValueError(f"{source.annotation_file} has no person with an 'activity' field")
        return cls(
            np.stack([p.keypoints for p in people]),
            np.stack([p.box for p in people]),
            [p.activity for p in people],
            activities,
            sources=[GROUND_TRUTH] * len(people),
            groups=groups,
        )

    @classmethod
    def from_poses_file(cls, path: str | Path, activities: tuple[str, ...]) -> ActivityPoseSet:
        """Read what ``extract_poses`` or ``extract_activity_poses`` wrote (source: the entry's ``source``,
        else "predicted"; group: ``<split>/<image_id>`` when the entry has them, else ``photo/<image>``)."""
        poses = json.loads(Path(path).read_text())["poses"]
        if not poses:
            raise ValueError(f"{path} holds no pose")
        return cls(
            np.array([p["keypoints"] for p in poses], np.float32).reshape(-1, 17, 3),
            np.array([p["bbox"] for p in poses], np.float32).reshape(-1, 4),
            [p["activity"] for p in poses],
            activities,
            sources=[str(p.get("source", PREDICTED)) for p in poses],
            groups=[_pose_group(p) for p in poses],
        )

    @classmethod
    def concat(cls, parts: Sequence[ActivityPoseSet]) -> ActivityPoseSet:
        """The samples of ``parts`` in order (same activities), keeping their sources and groups."""
        if not parts:
            raise ValueError("nothing to concatenate")
        activities = parts[0].activities
        if any(part.activities != activities for part in parts):
            raise ValueError(f"activity sets differ: {[part.activities for part in parts]}")
        joined = cls.__new__(cls)
        joined.activities = activities
        joined.features = torch.cat([part.features for part in parts])
        joined.labels = torch.cat([part.labels for part in parts])
        joined.sources = [s for part in parts for s in part.sources]
        joined.groups = [g for part in parts for g in part.groups]
        return joined

    def source_counts(self, indices: Sequence[int] | None = None) -> dict[str, int]:
        chosen = range(len(self)) if indices is None else indices
        counts: dict[str, int] = {}
        for index in chosen:
            counts[self.sources[index]] = counts.get(self.sources[index], 0) + 1
        return dict(sorted(counts.items()))

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self.features[index], self.labels[index]

    def split(
        self, val_fraction: float, seed: int = 0
    ) -> tuple[torch.utils.data.Subset, torch.utils.data.Subset]:
        """Random split (train, val) by group: whole groups (images) go to val, in a seeded order, until it
        holds ``round(len · fraction)`` samples (at least one group when fraction > 0); at least one group
        stays in train. Stratified-free."""
        order: dict[str, list[int]] = {}
        for index, group in enumerate(self.groups):
            order.setdefault(group, []).append(index)
        members = list(order.values())
        permutation = torch.randperm(len(members), generator=torch.Generator().manual_seed(seed)).tolist()
        wanted = max(1, round(len(self) * val_fraction)) if val_fraction > 0 else 0
        val: list[int] = []
        for position in permutation[: max(len(members) - 1, 0)]:
            if len(val) >= wanted:
                break
            val.extend(members[position])
        if wanted and len(members) < 2:
            log.warning("activity poses hold a single group: no validation split", samples=len(self))
        in_val = set(val)
        train = [i for position in permutation for i in members[position] if i not in in_val]
        return torch.utils.data.Subset(self, train), torch.utils.data.Subset(self, val)


def split_name(annotation_file: str | Path) -> str:
    """``person_keypoints_train.json`` / ``person_keypoints_train2017.json`` → ``train``."""
    stem = Path(annotation_file).stem.removeprefix("person_keypoints_")
    return stem.removesuffix("2017") or stem


def _pose_group(pose: dict[str, Any]) -> str:
    if "image_id" in pose and "split" in pose:
        return f"{pose['split']}/{pose['image_id']}"
    return f"photo/{pose.get('image', '')}"


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


def box_iou(first: np.ndarray, second: np.ndarray) -> np.ndarray:
    """IoU of every box of ``first`` (N, 4) with every box of ``second`` (M, 4), x1 y1 x2 y2 → (N, M);
    torchvision's, with 0 where both boxes are empty."""
    from torchvision.ops import box_iou as tv_box_iou

    a = torch.as_tensor(np.asarray(first, np.float64).reshape(-1, 4))
    b = torch.as_tensor(np.asarray(second, np.float64).reshape(-1, 4))
    return torch.nan_to_num(tv_box_iou(a, b), nan=0.0).numpy()


def match_persons(
    predicted_boxes: np.ndarray,
    predicted_scores: np.ndarray,
    truth_boxes: np.ndarray,
    iou_threshold: float = 0.5,
) -> np.ndarray:
    """One-to-one matching as COCO's evaluation does it: predictions in descending score (ties: input
    order), each takes the still unmatched ground-truth person of highest IoU ≥ ``iou_threshold``.
    Returns, per prediction, the index of its ground-truth person or -1."""
    scores = np.asarray(predicted_scores, np.float64).reshape(-1)
    iou = box_iou(predicted_boxes, truth_boxes)
    if iou.shape[0] != len(scores):
        raise ValueError(f"{iou.shape[0]} predicted boxes for {len(scores)} scores")
    matches = np.full(len(scores), -1, np.int64)
    free = np.ones(iou.shape[1], bool)
    for index in np.argsort(-scores, kind="stable"):
        candidates = np.where(free & (iou[index] >= iou_threshold), iou[index], -1.0)
        if candidates.size and candidates.max() >= 0:
            best = int(candidates.argmax())
            matches[index], free[best] = best, False
    return matches


@dataclass(frozen=True)
class MatchedPerson:
    """A predicted person matched to a ground-truth person (who carries the activity label)."""

    image_id: int
    file_name: str
    annotation_id: int
    activity: str
    truth_keypoints: np.ndarray  # (17, 3)
    truth_box: np.ndarray  # (4,) x1 y1 x2 y2
    prediction: PersonPrediction
    iou: float


@dataclass
class MatchCounts:
    images: int = 0
    truth_persons: int = 0  # not crowd, with an activity label
    predicted_persons: int = 0
    matched: int = 0


def as_pipeline(model: Any, device: str | None = None) -> Any:
    """A ``PosePipeline`` from a pipeline, a ``MultiPoseNet`` or a checkpoint path (None: the default);
    anything else with ``predict``, ``activities`` and ``model_version`` is used as it is."""
    from model.multiposenet import MultiPoseNet
    from model.pipeline import PosePipeline

    if isinstance(model, PosePipeline) or all(
        hasattr(model, name) for name in ("predict", "activities", "model_version")
    ):
        return model
    if isinstance(model, MultiPoseNet):
        return PosePipeline(model.eval(), "in-memory", device=device)
    if model is None or isinstance(model, (str, Path)):
        return PosePipeline.load(model, device=device)
    raise ValueError(f"need a PosePipeline, a MultiPoseNet or a checkpoint path, got {type(model).__name__}")


def matched_predictions(
    pipeline: Any,
    source: CocoKeypoints,
    iou_threshold: float = 0.5,
    batch_images: int = 8,
    counts: MatchCounts | None = None,
) -> Iterator[MatchedPerson]:
    """Run ``pipeline`` over the images of ``source`` and yield each predicted person matched one-to-one
    (``match_persons``) to a non-crowd ground-truth person with an ``activity``; ``counts`` is filled in."""
    counts = counts if counts is not None else MatchCounts()
    for start in range(0, len(source), batch_images):
        indices = list(range(start, min(start + batch_images, len(source))))
        predictions = pipeline.predict([source.load_image(i) for i in indices])
        for index, persons in zip(indices, predictions, strict=True):
            image_id = source.image_ids[index]
            truth = [p for p in source.people(index) if not p.iscrowd and p.activity is not None]
            counts.images += 1
            counts.truth_persons += len(truth)
            counts.predicted_persons += len(persons)
            if not truth or not persons:
                continue
            iou = box_iou(np.array([p.bbox for p in persons]), np.stack([p.box for p in truth]))
            matches = match_persons(
                np.array([p.bbox for p in persons]),
                np.array([p.score for p in persons]),
                np.stack([p.box for p in truth]),
                iou_threshold,
            )
            file_name = source.coco.imgs[image_id]["file_name"]
            for n, m in enumerate(matches):
                if m < 0:
                    continue
                counts.matched += 1
                yield MatchedPerson(
                    image_id=int(image_id),
                    file_name=str(file_name),
                    annotation_id=truth[m].annotation_id,
                    activity=str(truth[m].activity),
                    truth_keypoints=truth[m].keypoints,
                    truth_box=truth[m].box,
                    prediction=persons[n],
                    iou=float(iou[n, m]),
                )


def extract_activity_poses(
    checkpoint_or_pipeline: Any,
    data_dir: str | Path,
    split: str,
    out_file: str | Path,
    max_images: int | None = None,
    device: str | None = None,
    iou_threshold: float = 0.5,
) -> Path:
    """The trained pipeline over the labelled synthetic images of ``split``: every predicted person matched
    one-to-one to a ground-truth person (box IoU ≥ ``iou_threshold``, greedy by score) is written with that
    person's activity, in the poses-file format (``ActivityPoseSet.from_poses_file``, ``train activity
    --poses``), tagged source "predicted" and grouped by image (``<split>/<image_id>``).
    Returns ``out_file``."""
    pipeline = as_pipeline(checkpoint_or_pipeline, device)
    source = CocoKeypoints.from_root(data_dir, split, max_images=max_images)
    counts = MatchCounts()
    poses = [
        {
            "image": m.file_name,
            "image_id": m.image_id,
            "split": split,
            "annotation_id": m.annotation_id,
            "activity": m.activity,
            "source": PREDICTED,
            "iou": round(m.iou, 4),
            "bbox": [float(v) for v in m.prediction.bbox],
            "score": float(m.prediction.score),
            "keypoints": np.asarray(m.prediction.keypoints, np.float32).round(2).tolist(),
        }
        for m in matched_predictions(pipeline, source, iou_threshold, counts=counts)
    ]
    summary = {
        "data": str(data_dir),
        "split": split,
        "images": counts.images,
        "truth_persons": counts.truth_persons,
        "predicted_persons": counts.predicted_persons,
        "poses": len(poses),
        "iou_threshold": iou_threshold,
        "per_activity": {
            a: sum(p["activity"] == a for p in poses) for a in sorted({p["activity"] for p in poses})
        },
        "model_version": pipeline.model_version,
    }
    out = Path(out_file)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"summary": summary, "poses": poses}))
    log.info(
        "activity poses extracted", out=str(out), **{k: v for k, v in summary.items() if k != "per_activity"}
    )
    return out
