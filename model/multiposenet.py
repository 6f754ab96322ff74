"""MultiPoseNet (Kocabas et al., 2018) with the seed's activity classifier: one ``nn.Module``.

Parts (trained separately, joined in one checkpoint, as in the seed):

* ``keypoint``  — ResNet trunk, keypoint FPN (P2–P5), keypoint subnet;
* ``detection`` — detection FPN (P3–P7), RetinaNet person head;
* ``prn``       — Pose Residual Network;
* ``activity``  — activity MLP.

``forward`` in train mode takes a preprocessed batch and per-image targets and returns a dict of losses of
the keypoint and detection parts (PRN and activity are trained from their own inputs through their heads'
``loss``). In eval mode it returns, per image, boxes, scores, keypoints (N×17×3), activity and
activity_scores, in original-image pixels — by running exactly the three stage calls a server runs:
``PoseDetector.detect`` → ``PoseResidualNetwork.assign`` → ``ActivityClassifier.classify``.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import nn
from torchvision.ops import boxes as box_ops

from model.activity import ActivityClassifier
from model.backbone import DetectionFPN, KeypointFPN, ResNetBackbone
from model.config import ModelConfig
from model.decode import HEATMAP_STRIDE, find_peaks, heatmap_to_canvas, render_keypoint_targets
from model.detection_head import PersonDetectionHead
from model.keypoint_head import KeypointSubnet
from model.predictions import NUM_KEYPOINTS, Detections, PersonPrediction
from model.preprocess import Letterbox, unletterbox_boxes, unletterbox_points
from model.prn import PoseResidualNetwork
from model.view_merge import flip_boxes, resample_to_reference, unflip_heatmaps

# Checkpoint part → the MultiPoseNet attributes it holds.
PARTS: dict[str, tuple[str, ...]] = {
    "keypoint": ("backbone", "keypoint_fpn", "keypoint_head"),
    "detection": ("detection_fpn", "detection_head"),
    "prn": ("prn",),
    "activity": ("activity",),
}


class PoseDetector(nn.Module):
    """The backbone stage's slice: trunk + both FPNs + both heads → boxes and top-k peaks per joint."""

    def __init__(
        self,
        config: ModelConfig,
        backbone: ResNetBackbone,
        keypoint_fpn: KeypointFPN,
        keypoint_head: KeypointSubnet,
        detection_fpn: DetectionFPN,
        detection_head: PersonDetectionHead,
    ) -> None:
        super().__init__()
        self.config = config
        self.backbone = backbone
        self.keypoint_fpn = keypoint_fpn
        self.keypoint_head = keypoint_head
        self.detection_fpn = detection_fpn
        self.detection_head = detection_head

    @torch.no_grad()
    def detect(
        self, images: torch.Tensor, letterboxes: Sequence[Letterbox] | None = None
    ) -> list[Detections]:
        """images (B, 3, H, W) preprocessed → per image boxes + scores + peaks in original pixels."""
        _check_batch(images)
        canvas_hw = (int(images.shape[-2]), int(images.shape[-1]))
        if letterboxes is None:
            letterboxes = [Letterbox.identity(*canvas_hw)] * images.shape[0]
        if len(letterboxes) != images.shape[0]:
            raise ValueError(f"{len(letterboxes)} letterboxes for a batch of {images.shape[0]} images")
        heatmaps, persons = self._run_view(images)
        boxes = [
            (unletterbox_boxes(image_boxes.float().cpu().numpy(), box), scores.float().cpu().numpy())
            for box, (image_boxes, scores) in zip(letterboxes, persons, strict=True)
        ]
        return self._decode(heatmaps, letterboxes, boxes)

    @torch.no_grad()
    def detect_views(
        self,
        views: Sequence[tuple[torch.Tensor, Sequence[Letterbox]]],
        references: Sequence[Letterbox],
        flip: bool = False,
    ) -> list[Detections]:
        """Test-time augmentation (``model.test_time``): the same B frames letterboxed on several canvases.

        views: per scale, a batch (B, 3, h_s, w_s) and its letterboxes; references: each frame's letterbox
        on the reference canvas, whose stride-4 grid the averaged heatmaps live on. ``flip`` adds each
        view's left-right mirror. Boxes of all views are pooled in original pixels and merged by NMS."""
        if not views:
            raise ValueError("detect_views needs at least one view")
        batch_size = len(references)
        pooled_boxes: list[list[np.ndarray]] = [[] for _ in range(batch_size)]
        pooled_scores: list[list[np.ndarray]] = [[] for _ in range(batch_size)]
        heatmap_sum: torch.Tensor | None = None
        count = 0
        for images, letterboxes in views:
            _check_batch(images)
            if images.shape[0] != batch_size or len(letterboxes) != batch_size:
                raise ValueError(f"every view must hold the same {batch_size} frames")
            for mirrored in (False, True) if flip else (False,):
                heatmaps, persons = self._run_view(images.flip(-1) if mirrored else images)
                if mirrored:
                    heatmaps = unflip_heatmaps(heatmaps)
                    persons = [(flip_boxes(b, images.shape[-1]), s) for b, s in persons]
                resampled = resample_to_reference(heatmaps.float(), letterboxes, references)
                heatmap_sum = resampled if heatmap_sum is None else heatmap_sum + resampled
                count += 1
                for index, (box, (image_boxes, scores)) in enumerate(zip(letterboxes, persons, strict=True)):
                    pooled_boxes[index].append(unletterbox_boxes(image_boxes.float().cpu().numpy(), box))
                    pooled_scores[index].append(scores.float().cpu().numpy())
        merged = []
        for boxes_list, scores_list in zip(pooled_boxes, pooled_scores, strict=True):
            boxes = torch.from_numpy(np.concatenate(boxes_list).reshape(-1, 4))
            scores = torch.from_numpy(np.concatenate(scores_list))
            keep = box_ops.nms(boxes, scores, self.config.nms_iou_threshold)[: self.config.max_persons]
            merged.append((boxes[keep].numpy(), scores[keep].numpy()))
        return self._decode(heatmap_sum / count, references, merged)

    def _run_view(self, images: torch.Tensor) -> tuple[torch.Tensor, list[tuple[torch.Tensor, torch.Tensor]]]:
        """One canvas batch → heatmaps (B, 18, H/4, W/4) and per image (boxes (N, 4) canvas px, scores)."""
        canvas_hw = (int(images.shape[-2]), int(images.shape[-1]))
        features = self.backbone(images)
        heatmaps, _ = self.keypoint_head(self.keypoint_fpn(features))
        pyramid = self.detection_fpn(features)
        anchors = self.detection_head.anchors(images, pyramid)
        persons = self.detection_head.postprocess(
            self.detection_head(images, pyramid), anchors, pyramid, canvas_hw
        )
        return heatmaps, persons

    def _decode(
        self,
        heatmaps: torch.Tensor,
        letterboxes: Sequence[Letterbox],
        boxes: Sequence[tuple[np.ndarray, np.ndarray]],
    ) -> list[Detections]:
        """Peaks of heatmaps (B, 18, h, w) on the letterboxes' canvas + boxes already in original pixels."""
        config = self.config
        peaks = find_peaks(
            heatmaps[:, :NUM_KEYPOINTS], config.peak_top_k, config.peak_threshold, config.peak_nms_kernel
        )
        peaks[..., :2] = heatmap_to_canvas(peaks[..., :2], HEATMAP_STRIDE)  # (B, 17, K, 3) canvas px
        peaks_np = peaks.float().cpu().numpy()
        results = []
        for index, (box, (image_boxes, scores)) in enumerate(zip(letterboxes, boxes, strict=True)):
            image_peaks = peaks_np[index]
            found = image_peaks[..., 2:] > 0
            xy = np.where(found, unletterbox_points(image_peaks[..., :2], box), 0.0)
            # a box wholly in the letterbox padding clips to nothing in the original image
            inside = ((image_boxes[:, 2:] - image_boxes[:, :2]) >= 1).all(axis=1)
            results.append(
                Detections(
                    boxes=image_boxes[inside],
                    scores=scores.astype(np.float32)[inside],
                    peaks=np.concatenate([xy, image_peaks[..., 2:]], axis=-1).astype(np.float32),
                    width=box.width,
                    height=box.height,
                )
            )
        return results


class MultiPoseNet(nn.Module):
    def __init__(self, config: ModelConfig | None = None) -> None:
        super().__init__()
        self.config = config if config is not None else ModelConfig.preset("default")
        config = self.config
        self.backbone = ResNetBackbone(config.backbone_depth)
        channels = self.backbone.out_channels
        self.keypoint_fpn = KeypointFPN(channels, config.fpn_channels)
        self.keypoint_head = KeypointSubnet(config.fpn_channels, config.keypoint_width)
        self.detection_fpn = DetectionFPN(channels, config.fpn_channels)
        self.detection_head = PersonDetectionHead(config)
        self.prn = PoseResidualNetwork(config)
        self.activity = ActivityClassifier(config)
        # Parts loaded from a checkpoint that marked them trained (see model/checkpoint.py).
        self.trained_parts: set[str] = set()

    @property
    def activities(self) -> tuple[str, ...]:
        return tuple(self.config.activities)

    @property
    def prn_uses_network(self) -> bool:
        mode = self.config.prn_assignment
        return mode == "network" or (mode == "auto" and "prn" in self.trained_parts)

    def detector(self) -> PoseDetector:
        """The backbone stage's slice (shares this model's submodules and weights)."""
        return PoseDetector(
            self.config,
            self.backbone,
            self.keypoint_fpn,
            self.keypoint_head,
            self.detection_fpn,
            self.detection_head,
        )

    def part_modules(self, part: str) -> list[nn.Module]:
        if part not in PARTS:
            raise ValueError(f"unknown part {part!r}; parts are {sorted(PARTS)}")
        return [getattr(self, name) for name in PARTS[part]]

    def part_state_dict(self, part: str) -> dict[str, torch.Tensor]:
        """State of one part, keys prefixed by attribute name (``backbone.body.conv1.weight`` …)."""
        self.part_modules(part)  # validates the name
        state = {}
        for name in PARTS[part]:
            for key, value in getattr(self, name).state_dict().items():
                state[f"{name}.{key}"] = value
        return state

    def load_part_state_dict(self, part: str, state: dict[str, torch.Tensor]) -> None:
        """Strictly load one part; raises RuntimeError on missing/unexpected keys or shape mismatch."""
        self.part_modules(part)  # validates the name
        for name in PARTS[part]:
            prefix = f"{name}."
            sub = {key[len(prefix) :]: value for key, value in state.items() if key.startswith(prefix)}
            getattr(self, name).load_state_dict(sub, strict=True)
        unknown = [key for key in state if key.split(".", 1)[0] not in PARTS[part]]
        if unknown:
            raise RuntimeError(f"unexpected keys in part {part!r}: {unknown[:5]}")

    def forward(
        self,
        images: torch.Tensor,
        targets: Sequence[dict[str, torch.Tensor]] | None = None,
        letterboxes: Sequence[Letterbox] | None = None,
    ) -> dict[str, torch.Tensor] | list[dict[str, object]]:
        """Train: images (B, 3, H, W) + targets → losses. Eval: → per-image result dicts.

        Targets, per image, in canvas pixels: ``keypoints`` (N, 17, 3) x, y, v → keypoint losses;
        ``boxes`` (N, 4) → detection losses; optional ``mask`` (H/4, W/4) (0 = unlabelled person) and
        ``joint_weights`` (17,). A part whose key is missing from the targets is not run.
        """
        if self.training:
            if targets is None:
                raise ValueError("targets are required in training mode")
            return self._losses(images, targets)
        predictions = self.predict_batch(images, letterboxes)
        return [_to_result(image, self.activities) for image in predictions]

    def predict_batch(
        self, images: torch.Tensor, letterboxes: Sequence[Letterbox] | None = None
    ) -> list[list[PersonPrediction]]:
        """The three stages in a row (the same calls ``model.stages`` makes)."""
        detections = self.detector().detect(images, letterboxes)
        posed = self.prn.assign(detections, use_network=self.prn_uses_network)
        return self.activity.classify(posed)

    def _losses(
        self, images: torch.Tensor, targets: Sequence[dict[str, torch.Tensor]]
    ) -> dict[str, torch.Tensor]:
        _check_batch(images)
        if len(targets) != images.shape[0]:
            raise ValueError(f"{len(targets)} targets for a batch of {images.shape[0]} images")
        want_keypoints = all("keypoints" in t for t in targets)
        want_boxes = all("boxes" in t for t in targets)
        if not (want_keypoints or want_boxes):
            raise ValueError("targets need 'keypoints' and/or 'boxes' for every image")
        features = self.backbone(images)
        losses: dict[str, torch.Tensor] = {}
        if want_keypoints:
            heatmaps, intermediates = self.keypoint_head(self.keypoint_fpn(features))
            gt, mask, joint_weights = self._keypoint_targets(targets, heatmaps)
            losses.update(self.keypoint_head.loss(heatmaps, intermediates, gt, mask, joint_weights))
        if want_boxes:
            pyramid = self.detection_fpn(features)
            anchors = self.detection_head.anchors(images, pyramid)
            outputs = self.detection_head(images, pyramid)
            losses.update(self.detection_head.loss(outputs, anchors, [t["boxes"] for t in targets]))
        return losses

    def _keypoint_targets(
        self, targets: Sequence[dict[str, torch.Tensor]], heatmaps: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
        """Stack per-image targets: heatmaps (B, 18, h, w), mask W (B, 1, h, w) or None, joint weights
        (B, 17) or None (images without a mask / weights get ones)."""
        hm_hw = (heatmaps.shape[-2], heatmaps.shape[-1])
        device = heatmaps.device

        def tensor(target: dict[str, torch.Tensor], key: str, shape: tuple[int, ...]) -> torch.Tensor:
            if key not in target:
                return heatmaps.new_ones(shape)
            return target[key].to(device, torch.float32).reshape(shape)

        gt = torch.stack(
            [
                render_keypoint_targets(
                    t["keypoints"].to(device, torch.float32).reshape(-1, NUM_KEYPOINTS, 3),
                    hm_hw,
                    self.config.heatmap_sigma,
                )
                for t in targets
            ]
        )
        mask = (
            torch.stack([tensor(t, "mask", (1, *hm_hw)) for t in targets])
            if any("mask" in t for t in targets)
            else None
        )
        weights = (
            torch.stack([tensor(t, "joint_weights", (NUM_KEYPOINTS,)) for t in targets])
            if any("joint_weights" in t for t in targets)
            else None
        )
        return gt, mask, weights


def _check_batch(images: torch.Tensor) -> None:
    if not isinstance(images, torch.Tensor) or images.ndim != 4 or images.shape[1] != 3:
        shape = tuple(images.shape) if isinstance(images, torch.Tensor) else type(images).__name__
        raise ValueError(f"images must be a (B, 3, H, W) tensor, got {shape}")
    if images.shape[-2] % 32 or images.shape[-1] % 32:
        raise ValueError(f"image height and width must be multiples of 32, got {tuple(images.shape[-2:])}")


def _to_result(persons: list[PersonPrediction], activities: tuple[str, ...]) -> dict[str, object]:
    """One image's persons as torchvision-style tensors (+ the activity labels as a list)."""
    count = len(persons)
    return {
        "boxes": torch.tensor([p.bbox for p in persons], dtype=torch.float32).reshape(count, 4),
        "scores": torch.tensor([p.score for p in persons], dtype=torch.float32),
        "keypoints": torch.from_numpy(np.stack([p.keypoints for p in persons]).astype(np.float32))
        if persons
        else torch.zeros((0, NUM_KEYPOINTS, 3)),
        "activity": [p.activity for p in persons],
        # (N, n_classes) in the order of ``MultiPoseNet.activities``
        "activity_scores": torch.tensor(
            [[p.activity_scores[name] for name in activities] for p in persons], dtype=torch.float32
        ).reshape(count, len(activities)),
    }
