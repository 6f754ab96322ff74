"""Heatmap targets and peak decoding.

Coordinates: a heatmap of stride ``s`` has its pixel ``i`` centred on canvas pixel ``(i + 0.5)·s − 0.5``;
targets are rendered and peaks decoded with the same mapping, so they round-trip without bias.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

HEATMAP_STRIDE = 4  # P2's stride: the keypoint subnet's output resolution
# Heatmap pixels: the smoothing before the DARK refinement (network maps are not clean Gaussians). Kept
# small: a wider blur pulls in a close neighbour's tail (COCO AP of rendered ground-truth maps decoded with
# oracle assignment, synthetic 256 px val: 0.907 unblurred, 0.903 at 0.5, 0.886 at 1.0).
DARK_BLUR_SIGMA = 0.5
DARK_EPS = 1e-10  # log(max(h, eps)): keeps the log finite where the map is 0 or negative


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


def gaussian_blur(heatmaps: torch.Tensor, sigma: float) -> torch.Tensor:
    """Separable Gaussian blur of every channel, zero padding (as DARK): (B, J, H, W) → (B, J, H, W).

    ``sigma`` in heatmap pixels; the kernel spans ±3σ. The kernel sums to 1, so a blurred Gaussian of
    σ₀ is (up to sampling) a Gaussian of √(σ₀² + σ²) with the same centre.
    """
    if sigma <= 0:
        return heatmaps
    radius = max(1, int(math.ceil(3 * sigma)))
    taps = torch.arange(-radius, radius + 1, dtype=heatmaps.dtype, device=heatmaps.device)
    kernel = torch.exp(-(taps**2) / (2 * sigma**2))
    kernel = kernel / kernel.sum()
    batch, joints, height, width = heatmaps.shape
    planes = heatmaps.reshape(batch * joints, 1, height, width)
    planes = F.conv2d(planes, kernel.view(1, 1, 1, -1), padding=(0, radius))
    planes = F.conv2d(planes, kernel.view(1, 1, -1, 1), padding=(radius, 0))
    return planes.reshape(batch, joints, height, width)


def dark_offsets(
    heatmaps: torch.Tensor, xs: torch.Tensor, ys: torch.Tensor, blur_sigma: float = DARK_BLUR_SIGMA
) -> torch.Tensor:
    """Sub-pixel offsets of integer maxima by DARK (Zhang et al., "Distribution-Aware Coordinate
    Representation for Human Pose Estimation", CVPR 2020).

    heatmaps: (B, J, H, W); xs, ys: (B, J, K) integer peak positions → offsets (B, J, K, 2) dx, dy in
    heatmap pixels. Around its maximum a Gaussian's log is a quadratic, so one Newton step on
    ``L = log(max(blur(h), eps))`` lands on the centre: offset = −H⁻¹·∇L, with the gradient and the Hessian
    from central finite differences at the integer peak. The offset is 0 where the Hessian is not
    negative definite (a plateau, a saddle) or the peak is on the border (no two-sided differences),
    and clamped to ±1 px. A per-channel rescale of the blurred map (DARK restores its maximum) only adds a
    constant to L, so it is left out: it would not change the offset.
    """
    batch, joints, height, width = heatmaps.shape
    maps = gaussian_blur(heatmaps.float(), blur_sigma)
    log_maps = torch.log(maps.clamp(min=DARK_EPS))
    # Pad by one (replicate) so that every peak's 3×3 neighbourhood can be gathered; border peaks get
    # offset 0 below whatever the padded values give.
    padded = F.pad(log_maps, (1, 1, 1, 1), mode="replicate").flatten(2)  # (B, J, (H+2)(W+2))
    stride = width + 2

    def at(dx: int, dy: int) -> torch.Tensor:  # L at (x + dx, y + dy) for every peak: (B, J, K)
        return padded.gather(2, (ys + 1 + dy) * stride + (xs + 1 + dx))

    centre = at(0, 0)
    right, left, down, up = at(1, 0), at(-1, 0), at(0, 1), at(0, -1)
    gx = 0.5 * (right - left)
    gy = 0.5 * (down - up)
    dxx = right - 2 * centre + left
    dyy = down - 2 * centre + up
    dxy = 0.25 * (at(1, 1) - at(1, -1) - at(-1, 1) + at(-1, -1))
    det = dxx * dyy - dxy**2
    usable = (dxx < 0) & (det > 0)  # negative definite
    usable &= (xs > 0) & (xs < width - 1) & (ys > 0) & (ys < height - 1)
    safe_det = torch.where(usable, det, torch.ones_like(det))
    # −H⁻¹ g with H⁻¹ = [[dyy, −dxy], [−dxy, dxx]] / det
    offset_x = -(dyy * gx - dxy * gy) / safe_det
    offset_y = -(dxx * gy - dxy * gx) / safe_det
    offsets = torch.stack([offset_x, offset_y], dim=-1).clamp(-1.0, 1.0)
    return torch.where(usable.unsqueeze(-1), offsets, torch.zeros_like(offsets))


def find_peaks(
    heatmaps: torch.Tensor,
    top_k: int,
    threshold: float,
    nms_kernel: int = 3,
    blur_sigma: float = DARK_BLUR_SIGMA,
) -> torch.Tensor:
    """Top-k local maxima per channel with DARK sub-pixel refinement (see ``dark_offsets``).

    heatmaps: (B, J, H, W) → (B, J, K, 3) x, y (heatmap pixels), score; empty slots are all zeros.
    A local maximum is a pixel equal to the max of its ``nms_kernel`` window and above ``threshold``
    (and above 0 whatever the threshold: a score of 0 means "no peak" downstream). The score is the
    heatmap's value at the integer maximum; ``blur_sigma`` (heatmap pixels, 0 = none) smooths the map
    for the refinement only.
    """
    if heatmaps.ndim != 4:
        raise ValueError(f"heatmaps must be (B, J, H, W), got {tuple(heatmaps.shape)}")
    if top_k < 1:
        raise ValueError(f"top_k must be at least 1, got {top_k}")
    if nms_kernel < 1 or nms_kernel % 2 == 0:
        raise ValueError(f"nms_kernel must be a positive odd number, got {nms_kernel}")
    batch, joints, height, width = heatmaps.shape
    pooled = F.max_pool2d(heatmaps, nms_kernel, stride=1, padding=nms_kernel // 2)
    is_peak = (heatmaps == pooled) & (heatmaps > max(float(threshold), 0.0))
    candidates = torch.where(is_peak, heatmaps, torch.full_like(heatmaps, float("-inf")))
    k = min(top_k, height * width)
    scores, flat_index = candidates.flatten(2).topk(k, dim=2)  # (B, J, k)
    found = torch.isfinite(scores)
    ys = torch.div(flat_index, width, rounding_mode="floor")
    xs = flat_index % width

    offsets = dark_offsets(heatmaps, xs, ys, blur_sigma).to(heatmaps.dtype)  # (B, J, k, 2)
    xy = torch.stack([xs, ys], dim=-1).to(heatmaps.dtype) + offsets
    peaks = torch.cat([xy, scores.unsqueeze(-1)], dim=-1)
    peaks = torch.where(found.unsqueeze(-1), peaks, torch.zeros_like(peaks))
    if k < top_k:
        peaks = F.pad(peaks, (0, 0, 0, top_k - k))
    return peaks
