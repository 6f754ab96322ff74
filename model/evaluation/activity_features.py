"""Inputs of the activity study's classifiers, all invariant to where the person stands and how big
they look (translation and scale of keypoints and box together):

* ``keypoint_features`` — the seed's: joints normalised in the person box + visibility (51, ``encode_poses``);
* ``limb_features`` — per COCO-17 limb (``COCO_SKELETON``, 19 bones) the sine and cosine of its image
  angle and its length over the torso length (shoulder centre to hip centre; the box height where no
  shoulder or no hip is found): 57 more, zero for a limb with an end not found;
* ``window_features`` — a track's last frames: each frame's 51 seed features, oldest first, and the box
  motion from each earlier frame to the last (centre dx, dy over the last box height, log height ratio).
  The motion is the cue a still frame lacks: a walker in mid-stance has a stander's pose but moves.

Keypoints are (…, 17, 3) x, y, score (score or COCO visibility; > 0 = found), boxes (…, 4) x1, y1, x2, y2.
"""

from __future__ import annotations

import torch

from model.activity import encode_poses
from model.data.skeleton import COCO_SKELETON, KEYPOINT_INDEX, NUM_KEYPOINTS

LIMBS = torch.tensor(COCO_SKELETON, dtype=torch.int64)  # (19, 2) joint index pairs
KEYPOINT_WIDTH = 3 * NUM_KEYPOINTS  # 51
LIMB_WIDTH = 3 * len(COCO_SKELETON)  # 57
BOX_MOTION_WIDTH = 3  # dx, dy, log height ratio per earlier frame
_SHOULDERS = (KEYPOINT_INDEX["left_shoulder"], KEYPOINT_INDEX["right_shoulder"])
_HIPS = (KEYPOINT_INDEX["left_hip"], KEYPOINT_INDEX["right_hip"])


def _check(keypoints: torch.Tensor, boxes: torch.Tensor) -> None:
    if keypoints.ndim != 3 or keypoints.shape[1:] != (NUM_KEYPOINTS, 3) or boxes.shape != (len(keypoints), 4):
        raise ValueError(
            f"need keypoints (N, 17, 3) and boxes (N, 4), got {tuple(keypoints.shape)}, {tuple(boxes.shape)}"
        )


def keypoint_features(keypoints: torch.Tensor, boxes: torch.Tensor) -> torch.Tensor:
    """keypoints (N, 17, 3), boxes (N, 4) → (N, 51): exactly what the served classifier is fed."""
    return encode_poses(keypoints, boxes)


def _centre(points: torch.Tensor, found: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean of the found points among points (N, J, 2), found (N, J) → (N, 2) and (N,) any found."""
    count = found.sum(dim=1)
    total = (points * found[..., None]).sum(dim=1)
    return total / count.clamp(min=1)[:, None], count > 0


def torso_length(keypoints: torch.Tensor, boxes: torch.Tensor) -> torch.Tensor:
    """(N,) distance from the shoulder centre to the hip centre; the box height where either is unseen."""
    _check(keypoints, boxes)
    found = keypoints[..., 2] > 0
    shoulders, has_shoulder = _centre(keypoints[:, _SHOULDERS, :2], found[:, _SHOULDERS])
    hips, has_hip = _centre(keypoints[:, _HIPS, :2], found[:, _HIPS])
    box_height = (boxes[:, 3] - boxes[:, 1]).clamp(min=1e-3)
    torso = (shoulders - hips).norm(dim=1)
    measurable = has_shoulder & has_hip & (torso > 1e-3 * box_height)
    return torch.where(measurable, torso, box_height)


def limb_features(keypoints: torch.Tensor, boxes: torch.Tensor) -> torch.Tensor:
    """keypoints (N, 17, 3), boxes (N, 4) → (N, 57): per limb sin, cos of its angle (image axes, y down),
    then per limb its length / torso length."""
    _check(keypoints, boxes)
    found = keypoints[..., 2] > 0  # (N, 17)
    start, end = keypoints[:, LIMBS[:, 0], :2], keypoints[:, LIMBS[:, 1], :2]  # (N, 19, 2)
    both = (found[:, LIMBS[:, 0]] & found[:, LIMBS[:, 1]]).to(keypoints.dtype)  # (N, 19)
    vector = end - start
    length = vector.norm(dim=2)  # (N, 19)
    # a bone of length 0 has no direction: sin = cos = 0, like a bone not found
    direction = torch.where(length[..., None] > 1e-6, vector / length.clamp(min=1e-6)[..., None], 0.0)
    sin, cos = direction[..., 1] * both, direction[..., 0] * both
    ratio = length / torso_length(keypoints, boxes)[:, None] * both
    return torch.cat([sin, cos, ratio], dim=1)


def keypoint_limb_features(keypoints: torch.Tensor, boxes: torch.Tensor) -> torch.Tensor:
    """(N, 17, 3), (N, 4) → (N, 108): the seed's 51 then the 57 limb features."""
    return torch.cat([keypoint_features(keypoints, boxes), limb_features(keypoints, boxes)], dim=1)


def window_features(keypoints: torch.Tensor, boxes: torch.Tensor) -> torch.Tensor:
    """keypoints (N, W, 17, 3), boxes (N, W, 4), frames oldest first, the labelled frame last →
    (N, W·51 + (W−1)·3): each frame's seed features, then per earlier frame its box motion to the last."""
    if (
        keypoints.ndim != 4
        or keypoints.shape[2:] != (NUM_KEYPOINTS, 3)
        or boxes.shape != (*keypoints.shape[:2], 4)
    ):
        raise ValueError(
            "need keypoints (N, W, 17, 3) and boxes (N, W, 4), "
            f"got {tuple(keypoints.shape)}, {tuple(boxes.shape)}"
        )
    count, window = keypoints.shape[:2]
    per_frame = encode_poses(keypoints.reshape(-1, NUM_KEYPOINTS, 3), boxes.reshape(-1, 4))
    per_frame = per_frame.reshape(count, window * KEYPOINT_WIDTH)
    centre = (boxes[..., :2] + boxes[..., 2:]) / 2  # (N, W, 2)
    height = (boxes[..., 3] - boxes[..., 1]).clamp(min=1e-3)  # (N, W)
    last_centre, last_height = centre[:, -1:], height[:, -1:]
    shift = (last_centre - centre[:, :-1]) / last_height[..., None]  # (N, W-1, 2)
    growth = torch.log(last_height / height[:, :-1])  # (N, W-1)
    motion = torch.cat([shift, growth[..., None]], dim=2).reshape(count, (window - 1) * BOX_MOTION_WIDTH)
    return torch.cat([per_frame, motion], dim=1)


def window_width(window: int) -> int:
    """Features per sample of a ``window``-frame input."""
    return window * KEYPOINT_WIDTH + (window - 1) * BOX_MOTION_WIDTH
