"""The seed's training augmentation, done with ``torchvision.transforms.v2`` on tv_tensors.

Per sample: pick one annotated ("main") person, scale the image by ``U(0.7, 1.2)`` × the letterbox
scale onto the network's canvas (so people have the sizes they have at inference, whatever the crop
size), rotate by ``U(-40°, 40°)`` about that person, cut an ``input_size`` crop centred on them
(optionally jittered), flip horizontally with p = 0.3 (the seed says "vertical"; a vertical flip would
teach upside-down people, see DESIGN.md) swapping left/right joints, and zero-centre the BGR channels
with the model's mean. Image, ignore mask, keypoints and boxes go through the very same v2 functional
calls, so a keypoint moves with its pixels.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, Field
from torchvision import tv_tensors
from torchvision.transforms.v2 import InterpolationMode
from torchvision.transforms.v2 import functional as F

from model.predictions import FLIP_INDEX
from model.train.coco import ImageRecord, Person


class AugmentConfig(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    input_size: tuple[int, int] = (480, 480)  # crop (height, width)
    # The network's canvas (height, width) that people are scaled to, as letterboxing does at inference;
    # None: the crop. A crop smaller than the canvas is a window of the canvas, its people keep their size.
    canvas_size: tuple[int, int] | None = None
    # Crop centre moved by U(±centre_jitter · crop side) (person-centred crops: the main person is not always
    # mid-crop; whole-image views: the window roams over the canvas).
    centre_jitter: float = Field(0.0, ge=0, le=1)
    max_rotation_deg: float = Field(40.0, ge=0)
    scale_range: tuple[float, float] = (0.7, 1.2)
    flip_prob: float = Field(0.3, ge=0, le=1)
    pixel_mean_bgr: tuple[float, float, float] = (103.939, 116.779, 123.68)
    min_box_side: float = Field(2.0, ge=0)  # boxes smaller than this after cropping are dropped
    enabled: bool = True  # False: no random change, crop centred on the image (validation)
    # False: views centred on the image (detection training). The keypoint subnet learns from crops
    # centred on one person (the seed); a detector trained that way learns that people stand mid-crop.
    centre_on_person: bool = True


@dataclass
class AugmentedSample:
    image: torch.Tensor  # (3, H, W) float32, BGR zero-centred
    keypoints: torch.Tensor  # (P, 17, 3) x, y, v in crop pixels; v = 0 when unlabelled or outside
    boxes: torch.Tensor  # (P, 4) x1, y1, x2, y2 clamped to the crop
    labelled: torch.Tensor  # (P,) bool: not crowd and has keypoints
    iscrowd: torch.Tensor  # (P,) bool
    ignore_mask: torch.Tensor  # (H, W) bool, True where W = 0
    activities: list[str | None]
    flipped: bool = False
    angle: float = 0.0
    scale: float = 1.0


class PersonCropAugment:
    """Callable ``ImageRecord -> AugmentedSample``; pass a ``numpy.random.Generator`` for repeatability."""

    def __init__(self, config: AugmentConfig | None = None, rng: np.random.Generator | None = None) -> None:
        self.config = config or AugmentConfig()
        self.rng = rng or np.random.default_rng()
        # padding gets the mean colour so that it is exactly zero after centring, as letterboxing is
        self.fill = [float(v) for v in self.config.pixel_mean_bgr]

    def __call__(
        self,
        record: ImageRecord,
        angle: float | None = None,
        scale: float | None = None,
        flip: bool | None = None,
        main_person: int | None = None,
    ) -> AugmentedSample:
        cfg = self.config
        out_h, out_w = cfg.input_size
        height, width = record.image.shape[:2]
        people = record.people
        labelled = [i for i, p in enumerate(people) if p.labelled]
        rng = self.rng
        if cfg.enabled:
            if main_person is None and labelled and cfg.centre_on_person:
                main_person = int(rng.choice(labelled))
            angle = (
                float(rng.uniform(-cfg.max_rotation_deg, cfg.max_rotation_deg)) if angle is None else angle
            )
            scale = float(rng.uniform(*cfg.scale_range)) if scale is None else scale
            flip = bool(rng.random() < cfg.flip_prob) if flip is None else flip
        else:
            angle, scale, flip = angle or 0.0, scale or 1.0, bool(flip)
        canvas_h, canvas_w = cfg.canvas_size or cfg.input_size
        total_scale = min(canvas_h / height, canvas_w / width) * scale
        if main_person is not None:
            centre = _person_centre(people[main_person])
        else:
            centre = np.array([(width - 1) / 2, (height - 1) / 2], np.float32)
        if cfg.enabled and cfg.centre_jitter > 0:
            shift = rng.uniform(-cfg.centre_jitter, cfg.centre_jitter, 2) * (out_w, out_h) / total_scale
            centre = centre + shift.astype(np.float32)

        # window (original pixels) that, once scaled, covers the crop under any rotation
        side = math.ceil(math.hypot(out_h, out_w))
        window = max(1, round(side / total_scale))
        top, left = round(float(centre[1]) - window / 2), round(float(centre[0]) - window / 2)

        num_people = len(people)
        image = tv_tensors.Image(torch.from_numpy(np.ascontiguousarray(record.image)).permute(2, 0, 1))
        mask = tv_tensors.Mask(torch.from_numpy(record.ignore_mask.astype(np.uint8))[None])
        points = np.stack([p.keypoints for p in people]) if people else np.zeros((0, 17, 3), np.float32)
        keypoints = tv_tensors.KeyPoints(
            torch.from_numpy(points[..., :2].reshape(-1, 2).copy()), canvas_size=(height, width)
        )
        boxes = tv_tensors.BoundingBoxes(
            torch.from_numpy(np.stack([p.box for p in people]) if people else np.zeros((0, 4), np.float32)),
            format="XYXY",
            canvas_size=(height, width),
        )

        def crop_then_resize(x, fill):
            # image pixels outside the original become the mean colour; the mask there is 0 (learn background)
            x = F.crop(x, top, left, window, window)
            if isinstance(x, tv_tensors.Image):
                x = _fill_outside(x, top, left, height, width, fill)
            return F.resize(x, [side, side], antialias=True)

        image = crop_then_resize(image, self.fill)
        mask = crop_then_resize(mask, None)
        keypoints = crop_then_resize(keypoints, None)
        boxes = crop_then_resize(boxes, None)

        centre_px = [(side - 1) / 2, (side - 1) / 2]
        image = F.rotate(image, angle, InterpolationMode.BILINEAR, center=centre_px, fill=self.fill)
        mask = F.rotate(mask, angle, center=centre_px, fill=0)
        keypoints = F.rotate(keypoints, angle, center=centre_px)
        boxes = F.rotate(boxes, angle, center=centre_px)

        offset_top, offset_left = (side - out_h) // 2, (side - out_w) // 2
        image, mask, keypoints, boxes = (
            F.crop(x, offset_top, offset_left, out_h, out_w) for x in (image, mask, keypoints, boxes)
        )
        if flip:
            image, mask, keypoints, boxes = (F.horizontal_flip(x) for x in (image, mask, keypoints, boxes))

        xy = keypoints.as_subclass(torch.Tensor).reshape(num_people, 17, 2)
        visibility = torch.from_numpy(points[..., 2].copy())
        inside = (xy[..., 0] >= 0) & (xy[..., 0] <= out_w - 1) & (xy[..., 1] >= 0) & (xy[..., 1] <= out_h - 1)
        visibility = torch.where(inside, visibility, torch.zeros_like(visibility))
        result = torch.cat([xy, visibility[..., None]], dim=-1)
        result[result[..., 2] <= 0] = 0.0
        if flip:
            result = result[:, list(FLIP_INDEX)]

        boxes_t = boxes.as_subclass(torch.Tensor).clone()
        boxes_t[:, 0::2] = boxes_t[:, 0::2].clamp(0, out_w)
        boxes_t[:, 1::2] = boxes_t[:, 1::2].clamp(0, out_h)
        sides = boxes_t[:, 2:] - boxes_t[:, :2]
        keep = (sides >= cfg.min_box_side).all(dim=1) | (result[..., 2] > 0).any(dim=1)
        is_labelled = torch.tensor([p.labelled for p in people], dtype=torch.bool)
        is_crowd = torch.tensor([p.iscrowd for p in people], dtype=torch.bool)
        keep_list = keep.tolist()

        mean = torch.tensor(cfg.pixel_mean_bgr, dtype=torch.float32)[:, None, None]
        return AugmentedSample(
            image=image.as_subclass(torch.Tensor).float() - mean,
            keypoints=result[keep],
            boxes=boxes_t[keep],
            labelled=is_labelled[keep] & (result[keep][..., 2] > 0).any(dim=1),
            iscrowd=is_crowd[keep],
            ignore_mask=mask.as_subclass(torch.Tensor)[0] > 0,
            activities=[p.activity for p, k in zip(people, keep_list, strict=True) if k],
            flipped=flip,
            angle=angle,
            scale=scale,
        )


def _person_centre(person: Person) -> np.ndarray:
    visible = person.keypoints[person.keypoints[:, 2] > 0, :2]
    if len(visible):
        return (visible.min(axis=0) + visible.max(axis=0)) / 2
    return (person.box[:2] + person.box[2:]) / 2


def _fill_outside(
    image: tv_tensors.Image, top: int, left: int, height: int, width: int, fill: list[float]
) -> tv_tensors.Image:
    """F.crop pads with zeros; paint the padded border with ``fill`` instead."""
    _, crop_h, crop_w = image.shape
    inside = torch.zeros((crop_h, crop_w), dtype=torch.bool)
    inside[
        max(0, -top) : max(0, min(crop_h, height - top)), max(0, -left) : max(0, min(crop_w, width - left))
    ] = True
    if bool(inside.all()):
        return image
    colour = torch.tensor([round(v) for v in fill], dtype=image.dtype)[:, None, None]
    return tv_tensors.wrap(torch.where(inside, image, colour), like=image)
