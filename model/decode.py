"""Heatmap targets and peak decoding.

Coordinates: a heatmap of stride ``s`` has its pixel ``i`` centred on canvas pixel ``(i + 0.5)·s − 0.5``;
targets are rendered and peaks decoded with the same mapping, so they round-trip without bias.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

HEATMAP_STRIDE = 4  # P2's stride: the keypoint subnet's output resolution


def canvas_to_heatmap(xy: torch.Tensor, stride: int = HEATMAP_STRIDE) -> torch.Tensor:
    return (xy + 0.5) / stride - 0.5


def heatmap_to_canvas(xy: torch.Tensor, stride: int = HEATMAP_STRIDE) -> torch.Tensor:
    return (xy + 0.5) * stride - 0.5


def render_gaussians(
    centres: torch.Tensor, valid: torch.Tensor, height: int, width: int, sigma: float
) -> torch.Tensor:
    """Max over Gaussians (peak 1) at ``centres``.

    centres: (..., P, 2) x, y in map pixels; valid: (..., P) bool → (..., height, width).
    """
    ys = torch.arange(height, dtype=centres.dtype, device=centres.device)
    xs = torch.arange(width, dtype=centres.dtype, device=centres.device)
    # Separable: exp(-(dx² + dy²) / 2σ²) = gx · gy.  (..., P, W) and (..., P, H)
    gx = torch.exp(-((xs - centres[..., 0:1]) ** 2) / (2 * sigma**2))
    gy = torch.exp(-((ys - centres[..., 1:2]) ** 2) / (2 * sigma**2))
    gx = gx * valid.unsqueeze(-1).to(gx.dtype)
    out = centres.new_zeros((*centres.shape[:-2], height, width))
    for p in range(centres.shape[-2]):  # max over points, one (H, W) plane at a time to bound memory
        out = torch.maximum(out, gy[..., p, :, None] * gx[..., p, None, :])
    return out


def render_keypoint_targets(
    keypoints: torch.Tensor, heatmap_hw: tuple[int, int], sigma: float, stride: int = HEATMAP_STRIDE
) -> torch.Tensor:
    """Ground-truth heatmaps for one image.

    keypoints: (N, J, 3) x, y, v in canvas pixels (v > 0 = labelled) → (J + 1, H, W): one Gaussian per
    labelled joint, max over persons; the last channel is the background, 1 − max over joints.
    """
    height, width = heatmap_hw
    num_joints = keypoints.shape[1] if keypoints.ndim == 3 else 17
    if keypoints.numel() == 0:
        joints = keypoints.new_zeros((num_joints, height, width))
    else:
        centres = canvas_to_heatmap(keypoints[..., :2].transpose(0, 1), stride)  # (J, N, 2)
        valid = keypoints[..., 2].transpose(0, 1) > 0  # (J, N)
        joints = render_gaussians(centres, valid, height, width, sigma)
    background = 1.0 - joints.amax(dim=0, keepdim=True)
    return torch.cat([joints, background], dim=0)


def find_peaks(heatmaps: torch.Tensor, top_k: int, threshold: float, nms_kernel: int = 3) -> torch.Tensor:
    """Top-k local maxima per channel with quarter-pixel refinement (Simple Baselines).

    heatmaps: (B, J, H, W) → (B, J, K, 3) x, y (heatmap pixels), score; empty slots are all zeros.
    A local maximum is a pixel equal to the max of its ``nms_kernel`` window and above ``threshold``
    (and above 0 whatever the threshold: a score of 0 means "no peak" downstream).
    """
    if heatmaps.ndim != 4:
        raise ValueError(f"heatmaps must be (B, J, H, W), got {tuple(heatmaps.shape)}")
    batch, joints, height, width = heatmaps.shape
    pooled = F.max_pool2d(heatmaps, nms_kernel, stride=1, padding=nms_kernel // 2)
    is_peak = (heatmaps == pooled) & (heatmaps > max(float(threshold), 0.0))
    candidates = torch.where(is_peak, heatmaps, torch.full_like(heatmaps, float("-inf")))
    k = min(top_k, height * width)
    scores, flat_index = candidates.flatten(2).topk(k, dim=2)  # (B, J, k)
    found = torch.isfinite(scores)
    ys = torch.div(flat_index, width, rounding_mode="floor")
    xs = flat_index % width

    # Quarter offset towards the higher neighbour: sign of the central difference, 0 at the border.
    diff_x = F.pad(heatmaps[..., :, 2:] - heatmaps[..., :, :-2], (1, 1, 0, 0))
    diff_y = F.pad(heatmaps[..., 2:, :] - heatmaps[..., :-2, :], (0, 0, 1, 1))
    offset_x = torch.sign(diff_x.flatten(2).gather(2, flat_index)) * 0.25
    offset_y = torch.sign(diff_y.flatten(2).gather(2, flat_index)) * 0.25

    peaks = torch.stack([xs.to(heatmaps.dtype) + offset_x, ys.to(heatmaps.dtype) + offset_y, scores], dim=-1)
    peaks = torch.where(found.unsqueeze(-1), peaks, torch.zeros_like(peaks))
    if k < top_k:
        peaks = F.pad(peaks, (0, 0, 0, top_k - k))
    return peaks
