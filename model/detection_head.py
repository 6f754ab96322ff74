"""RetinaNet person detector (one class) on P3–P7, reusing torchvision's RetinaNet pieces."""

from __future__ import annotations

import torch
from torch import nn
from torchvision.models.detection import _utils as det_utils
from torchvision.models.detection.anchor_utils import AnchorGenerator
from torchvision.models.detection.image_list import ImageList
from torchvision.models.detection.retinanet import RetinaNetHead
from torchvision.ops import boxes as box_ops

from model.config import ModelConfig


class PersonDetectionHead(nn.Module):
    """Classification (sigmoid focal loss) + box regression subnets shared over P3–P7, anchors per level,
    IoU matching (≥ 0.5 foreground, < 0.4 background) and score filter → top-k → ``batched_nms``."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.config = config
        # One tuple per level, built eagerly: a lazy inner generator would late-bind ``size`` and give
        # every level the last level's sizes.
        sizes = tuple(
            tuple(round(size * scale) for scale in config.anchor_scales) for size in config.anchor_sizes
        )
        ratios = (tuple(config.anchor_aspect_ratios),) * len(sizes)
        self.anchor_generator = AnchorGenerator(sizes, ratios)
        self.head = RetinaNetHead(config.fpn_channels, config.num_anchors, num_classes=1)
        self.head.regression_head._loss_type = config.box_loss
        self.box_coder = det_utils.BoxCoder(weights=(1.0, 1.0, 1.0, 1.0))
        self.matcher = det_utils.Matcher(
            config.fg_iou_threshold, config.bg_iou_threshold, allow_low_quality_matches=True
        )

    def anchors(self, images: torch.Tensor, pyramid: list[torch.Tensor]) -> list[torch.Tensor]:
        """One (sum H·W·A, 4) anchor tensor per image, in canvas pixels."""
        image_list = ImageList(images, [tuple(images.shape[-2:])] * images.shape[0])
        return self.anchor_generator(image_list, pyramid)

    def forward(self, images: torch.Tensor, pyramid: list[torch.Tensor]) -> dict[str, torch.Tensor]:
        """→ cls_logits (B, ΣHWA, 1), bbox_regression (B, ΣHWA, 4)."""
        if len(pyramid) != 5:
            raise ValueError(f"the detection head takes P3–P7 (5 levels), got {len(pyramid)}")
        return self.head(pyramid)

    def loss(
        self,
        outputs: dict[str, torch.Tensor],
        anchors: list[torch.Tensor],
        boxes: list[torch.Tensor],
    ) -> dict[str, torch.Tensor]:
        """boxes: per image (N, 4) person boxes in canvas pixels (N may be 0)."""
        targets, matched = [], []
        for gt_boxes, image_anchors in zip(boxes, anchors, strict=True):
            gt_boxes = gt_boxes.reshape(-1, 4).to(image_anchors)
            if gt_boxes.numel() and bool((gt_boxes[:, 2:] <= gt_boxes[:, :2]).any()):
                raise ValueError("person boxes need x2 > x1 and y2 > y1")
            labels = torch.zeros(gt_boxes.shape[0], dtype=torch.int64, device=gt_boxes.device)
            targets.append({"boxes": gt_boxes, "labels": labels})
            if gt_boxes.numel() == 0:
                matched.append(
                    torch.full((image_anchors.shape[0],), -1, dtype=torch.int64, device=gt_boxes.device)
                )
            else:
                matched.append(self.matcher(box_ops.box_iou(gt_boxes, image_anchors)))
        losses = self.head.compute_loss(targets, outputs, anchors, matched)
        return {
            "detection_classification": losses["classification"],
            "detection_box": losses["bbox_regression"],
        }

    @torch.no_grad()
    def postprocess(
        self,
        outputs: dict[str, torch.Tensor],
        anchors: list[torch.Tensor],
        pyramid: list[torch.Tensor],
        canvas_hw: tuple[int, int],
    ) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """Per image: boxes (N, 4) in canvas pixels and scores (N,), score-sorted, after NMS."""
        config = self.config
        per_level = [feature.shape[-2] * feature.shape[-1] * config.num_anchors for feature in pyramid]
        results = []
        for logits, regression, image_anchors in zip(
            outputs["cls_logits"], outputs["bbox_regression"], anchors, strict=True
        ):
            all_boxes, all_scores = [], []
            for level_logits, level_regression, level_anchors in zip(
                logits.split(per_level),
                regression.split(per_level),
                image_anchors.split(per_level),
                strict=True,
            ):
                scores = torch.sigmoid(level_logits).flatten()  # one class: one score per anchor
                keep = torch.where(scores > config.candidate_score_threshold)[0]
                scores = scores[keep]
                count = min(config.candidates_per_level, keep.numel())
                scores, order = scores.topk(count)
                keep = keep[order]
                level_boxes = self.box_coder.decode_single(level_regression[keep], level_anchors[keep])
                all_boxes.append(box_ops.clip_boxes_to_image(level_boxes, canvas_hw))
                all_scores.append(scores)
            boxes, scores = torch.cat(all_boxes), torch.cat(all_scores)
            valid = (scores >= config.person_score_threshold) & ((boxes[:, 2:] - boxes[:, :2]) > 1).all(dim=1)
            boxes, scores = boxes[valid], scores[valid]
            keep = box_ops.batched_nms(
                boxes, scores, torch.zeros_like(scores, dtype=torch.int64), config.nms_iou_threshold
            )
            keep = keep[: config.max_persons]
            results.append((boxes[keep], scores[keep]))
        return results
