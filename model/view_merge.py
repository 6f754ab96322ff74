"""Merging test-time views (``model.test_time``): flipped views back, every view onto the reference grid."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F

from model.decode import HEATMAP_STRIDE, canvas_to_heatmap, heatmap_to_canvas
from model.predictions import FLIP_INDEX, NUM_KEYPOINTS
from model.preprocess import Letterbox


def unflip_heatmaps(heatmaps: torch.Tensor) -> torch.Tensor:
    """Maps of a left-right flipped canvas (B, 17 + 1, h, w) → maps of the unflipped canvas.

    With pixel i of a stride-s map centred on canvas pixel (i + 0.5)·s − 0.5, flipping the canvas flips
    the map exactly (pixel i ↔ w − 1 − i): no half-pixel shift is needed."""
    order = [*FLIP_INDEX, *range(NUM_KEYPOINTS, heatmaps.shape[1])]  # background (and any extra) stay put
    return heatmaps.flip(-1)[:, order]


def flip_boxes(boxes: torch.Tensor, canvas_width: int) -> torch.Tensor:
    """(N, 4) x1, y1, x2, y2 on a flipped canvas → on the unflipped one."""
    return torch.stack(
        [canvas_width - boxes[:, 2], boxes[:, 1], canvas_width - boxes[:, 0], boxes[:, 3]], dim=1
    )


def resample_to_reference(
    heatmaps: torch.Tensor, views: Sequence[Letterbox], references: Sequence[Letterbox]
) -> torch.Tensor:
    """One view's maps (B, C, h, w) → the reference grid (B, C, H/4, W/4) of each frame's reference letterbox.

    Each reference map pixel is centred on a reference-canvas point; that point is taken back to the
    original image and forward onto the view's canvas, and the view's map is sampled there (bilinear)."""
    if len(views) != heatmaps.shape[0] or len(references) != heatmaps.shape[0]:
        raise ValueError(f"{len(views)} / {len(references)} letterboxes for {heatmaps.shape[0]} heatmaps")
    reference = references[0]
    out_h = reference.canvas_height // HEATMAP_STRIDE
    out_w = reference.canvas_width // HEATMAP_STRIDE
    in_h, in_w = heatmaps.shape[-2:]
    device, dtype = heatmaps.device, torch.float32
    grid_x = heatmap_to_canvas(torch.arange(out_w, device=device, dtype=dtype))  # reference canvas px
    grid_y = heatmap_to_canvas(torch.arange(out_h, device=device, dtype=dtype))
    grids = []
    for view, ref in zip(views, references, strict=True):
        # reference canvas → original image → view canvas → view map pixels → grid_sample's [-1, 1]
        x = canvas_to_heatmap((grid_x - ref.pad_x) / ref.scale * view.scale + view.pad_x)
        y = canvas_to_heatmap((grid_y - ref.pad_y) / ref.scale * view.scale + view.pad_y)
        x = (x + 0.5) / in_w * 2 - 1  # align_corners=False: pixel i spans [i, i + 1) of [0, w)
        y = (y + 0.5) / in_h * 2 - 1
        grids.append(torch.stack(torch.meshgrid(y, x, indexing="ij")[::-1], dim=-1))  # (H, W, 2) as x, y
    grid = torch.stack(grids).to(heatmaps.dtype)
    return F.grid_sample(heatmaps, grid, mode="bilinear", padding_mode="border", align_corners=False)
