"""Scene backgrounds: gradients with a ground plane, smooth noise, clutter shapes, shipped photos.

Photos come only from packages already installed (matplotlib's sample data; scikit-image's
``data`` module if present), never from the network, and never pictures with people in them
(an unlabelled person in the background would teach the model to ignore people).
"""

from __future__ import annotations

import functools
import importlib.util
import math
from pathlib import Path

import cv2
import numpy as np

# scikit-image sample images without people (astronaut/camera show people)
_SKIMAGE_PHOTOS = (
    "coffee",
    "chelsea",
    "rocket",
    "hubble_deep_field",
    "immunohistochemistry",
    "brick",
    "grass",
    "gravel",
    "rough_wall",
)


def _matplotlib_photos() -> list[np.ndarray]:
    spec = importlib.util.find_spec("matplotlib")
    if spec is None or spec.origin is None:
        return []
    sample = Path(spec.origin).parent / "mpl-data" / "sample_data"
    photos = []
    present = cv2.imread(str(sample / "Minduka_Present_Blue_Pack.png"), cv2.IMREAD_COLOR)
    if present is not None:
        photos.append(present)
    for name, key in (("jacksboro_fault_dem.npz", "elevation"), ("topobathy.npz", "topo")):
        path = sample / name
        if not path.exists():
            continue
        try:
            with np.load(path) as data:
                elevation = np.asarray(data[key], np.float32)
        except (KeyError, ValueError, OSError):
            continue
        photos.append(_hillshade(elevation))
    return photos


def _hillshade(elevation: np.ndarray) -> np.ndarray:
    """Terrain data rendered as a shaded, coloured landscape texture."""
    elevation = np.nan_to_num(elevation)
    gy, gx = np.gradient(elevation)
    shade = np.clip(0.5 + (gx - gy) / (4 * (np.abs(gx).mean() + np.abs(gy).mean() + 1e-6)), 0, 1)
    norm = (elevation - elevation.min()) / (np.ptp(elevation) + 1e-6)
    colour = cv2.applyColorMap((norm * 255).astype(np.uint8), cv2.COLORMAP_SUMMER).astype(np.float32)
    return np.clip(colour * (0.4 + 0.8 * shade[..., None]), 0, 255).astype(np.uint8)


def _skimage_photos() -> list[np.ndarray]:
    if importlib.util.find_spec("skimage") is None:
        return []
    try:
        from skimage import data  # type: ignore[import-not-found]
    except ImportError:
        return []
    photos = []
    for name in _SKIMAGE_PHOTOS:
        try:
            img = np.asarray(getattr(data, name)())
        except Exception:  # noqa: BLE001 - some images need optional downloads; skip them
            continue
        if img.ndim == 2:
            img = cv2.cvtColor(img.astype(np.uint8), cv2.COLOR_GRAY2BGR)
        elif img.ndim == 3 and img.shape[2] >= 3:
            img = cv2.cvtColor(img[..., :3].astype(np.uint8), cv2.COLOR_RGB2BGR)
        else:
            continue
        photos.append(img)
    return photos


@functools.cache
def shipped_photos() -> tuple[np.ndarray, ...]:
    """Photos found in installed packages, loaded once per process."""
    return tuple(p for p in _matplotlib_photos() + _skimage_photos() if min(p.shape[:2]) >= 64)


def _random_colour(rng: np.random.Generator, low: int = 0, high: int = 256) -> tuple[int, int, int]:
    return tuple(int(c) for c in rng.integers(low, high, 3))


def _muted_colour(rng: np.random.Generator) -> tuple[int, int, int]:
    """Mostly unsaturated colours, as walls, floors and skies usually are."""
    hsv = np.array([[[rng.integers(0, 180), rng.integers(0, 140), rng.integers(30, 250)]]], np.uint8)
    return tuple(int(c) for c in cv2.cvtColor(hsv, cv2.COLOR_HSV2BGR)[0, 0])


def _smooth_noise(rng: np.random.Generator, h: int, w: int, cells: int, amplitude: float) -> np.ndarray:
    """Low-frequency colour noise: a tiny random grid upsampled (cheap and deterministic)."""
    # mostly brightness, a little colour: real scenes are not confetti
    grid = rng.normal(0.0, amplitude, (cells, cells, 1)) + rng.normal(
        0.0, amplitude * 0.35, (cells, cells, 3)
    )
    grid = grid.astype(np.float32)
    return cv2.resize(grid, (w, h), interpolation=cv2.INTER_CUBIC)


def _gradient(rng: np.random.Generator, h: int, w: int, horizon: float) -> np.ndarray:
    """Sky/wall above the horizon, floor below it, each a vertical colour ramp."""
    y = np.arange(h, dtype=np.float32)[:, None, None]
    top_a, top_b, low_a, low_b = (np.array(_muted_colour(rng), np.float32) for _ in range(4))
    hy = max(horizon * h, 1.0)
    t_top = np.clip(y / hy, 0, 1)
    t_low = np.clip((y - hy) / max(h - hy, 1.0), 0, 1)
    img = np.where(y < hy, top_a + (top_b - top_a) * t_top, low_a + (low_b - low_a) * t_low)
    return np.broadcast_to(img, (h, w, 3)).astype(np.float32)


def _photo(rng: np.random.Generator, h: int, w: int, photos) -> np.ndarray:
    src = photos[int(rng.integers(len(photos)))]
    sh, sw = src.shape[:2]
    crop = float(rng.uniform(0.35, 1.0))
    ch, cw = max(int(sh * crop), 16), max(int(sw * crop), 16)
    y0, x0 = int(rng.integers(0, sh - ch + 1)), int(rng.integers(0, sw - cw + 1))
    img = cv2.resize(src[y0 : y0 + ch, x0 : x0 + cw], (w, h), interpolation=cv2.INTER_LINEAR)
    if rng.random() < 0.5:
        img = img[:, ::-1]
    gain = rng.uniform(0.6, 1.3, 3).astype(np.float32)
    return img.astype(np.float32) * gain


def _floor_tiles(img: np.ndarray, rng: np.random.Generator, horizon: float) -> None:
    """A perspective checkerboard floor below the horizon."""
    h, w = img.shape[:2]
    hy = int(horizon * h)
    if hy >= h - 4:
        return
    tile = int(rng.integers(4, 12))
    board = (np.indices((tile * 8, tile * 8)).sum(0) // tile % 2).astype(np.float32)
    colour = np.array(_random_colour(rng, 40, 220), np.float32)
    src = np.float32([[0, 0], [tile * 8, 0], [tile * 8, tile * 8], [0, tile * 8]])
    spread = float(rng.uniform(1.5, 4.0))
    dst = np.float32(
        [[w * 0.5 - w * 0.3, hy], [w * 0.5 + w * 0.3, hy], [w * (0.5 + spread), h], [w * (0.5 - spread), h]]
    )
    warp = cv2.warpPerspective(board, cv2.getPerspectiveTransform(src, dst), (w, h), flags=cv2.INTER_LINEAR)
    strength = float(rng.uniform(0.15, 0.45))
    img[hy:] = img[hy:] * (1 - strength * warp[hy:, :, None]) + colour * strength * warp[hy:, :, None]


def _clutter(img: np.ndarray, rng: np.random.Generator, count: int) -> None:
    """Rectangles (buildings, windows, furniture), circles, poles and blobs."""
    h, w = img.shape[:2]
    for _ in range(count):
        colour = _random_colour(rng)
        kind = int(rng.integers(5))
        x, y = int(rng.integers(-w // 8, w)), int(rng.integers(-h // 8, h))
        size = int(rng.integers(max(h // 30, 2), max(h // 3, 3)))
        if kind == 0:
            cv2.rectangle(
                img, (x, y), (x + size, y + int(size * rng.uniform(0.3, 3))), colour, -1, cv2.LINE_AA
            )
        elif kind == 1:
            cv2.circle(img, (x, y), size // 2, colour, -1, cv2.LINE_AA)
        elif kind == 2:
            cv2.line(
                img,
                (x, y),
                (x + int(rng.integers(-size, size)), y + size * 2),
                colour,
                int(rng.integers(1, max(size // 6, 2))),
                cv2.LINE_AA,
            )
        elif kind == 3:
            pts = (rng.normal(0, size / 2.5, (int(rng.integers(3, 7)), 2)) + (x, y)).astype(np.int32)
            cv2.fillPoly(img, [cv2.convexHull(pts)], colour, cv2.LINE_AA)
        else:
            cv2.ellipse(
                img,
                (x, y),
                (size // 2, max(size // 5, 1)),
                float(rng.uniform(0, 180)),
                0,
                360,
                colour,
                -1,
                cv2.LINE_AA,
            )


def make_background(rng: np.random.Generator, width: int, height: int, horizon: float) -> np.ndarray:
    """A (height, width, 3) uint8 BGR background whose floor starts at ``horizon`` (fraction of height)."""
    photos = shipped_photos()
    choice = rng.random()
    if photos and choice < 0.25:
        base = _photo(rng, height, width, photos)
    else:
        base = _gradient(rng, height, width, horizon)
        if rng.random() < 0.4:
            _floor_tiles(base, rng, horizon)
    base = base + _smooth_noise(rng, height, width, int(rng.integers(3, 12)), float(rng.uniform(5, 40)))
    img = np.clip(base, 0, 255).astype(np.uint8)
    _clutter(img, rng, int(rng.integers(0, 14)))
    if rng.random() < 0.5:
        sigma = float(rng.uniform(0.5, 2.5))
        img = cv2.GaussianBlur(img, (0, 0), sigma)
    return np.ascontiguousarray(img)


def finish_image(img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Camera-like finish over the whole picture: uneven lighting, slight blur, sensor noise."""
    h, w = img.shape[:2]
    light = 1.0 + _smooth_noise(rng, h, w, 3, float(rng.uniform(0.0, 0.18)))[..., :1]
    out = img.astype(np.float32) * light
    if rng.random() < 0.3:
        out = cv2.GaussianBlur(out, (0, 0), float(rng.uniform(0.4, 1.0)))
    noise_sigma = float(rng.uniform(0, 6))
    if noise_sigma > 1:
        small = rng.normal(0, noise_sigma, (h // 2 + 1, w // 2 + 1, 1)).astype(np.float32)
        out += cv2.resize(small, (w, h), interpolation=cv2.INTER_NEAREST)[..., None][:h, :w]
    return np.clip(out, 0, 255).astype(np.uint8)


def light_direction(rng: np.random.Generator) -> np.ndarray:
    """Unit 2D vector toward the light in image coordinates (mostly from above)."""
    angle = float(rng.uniform(-math.pi * 0.9, -math.pi * 0.1))
    return np.array([math.cos(angle), math.sin(angle)])


EMPTY_FRAME_KINDS = 4  # 0, 1: drawn backgrounds; 2: uniform noise; 3: Gaussian noise


def empty_frame(rng: np.random.Generator, width: int, height: int, kind: int) -> np.ndarray:
    """A BGR uint8 frame that holds nobody: a drawn background (``kind`` 0, 1), uniform noise (2) or
    Gaussian noise of random level (3) — what an empty or dark camera shows."""
    if not 0 <= kind < EMPTY_FRAME_KINDS:
        raise ValueError(f"kind must be in 0..{EMPTY_FRAME_KINDS - 1}, got {kind}")
    if kind < 2:
        horizon = float(rng.uniform(0.25, 0.6))
        return finish_image(make_background(rng, width, height, horizon), rng)
    if kind == 2:
        return rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
    noise = rng.normal(float(rng.uniform(60, 190)), float(rng.uniform(10, 60)), (height, width, 3))
    return np.clip(noise, 0, 255).astype(np.uint8)
