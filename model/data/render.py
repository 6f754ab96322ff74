"""Drawing posed bodies: shaded limbs, torso and head, seats, and a label map for visibility.

Every person is drawn twice: anti-aliased and shaded into the BGR image, and flat into a
uint8 label map whose value ``(person + 1) * 16 + part`` says who covers each pixel. Parts are
painted back to front by depth, people back to front by distance, so the label map tells
honestly which joints are hidden (COCO v=1) and which are seen (v=2).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

from model.data.poses import Body3D, BodyShape, View, project, view_rotation
from model.data.skeleton import COCO_KEYPOINT_NAMES, JOINT_PARTS, PART_INDEX

SHIFT = 4  # cv2 fixed-point bits: sub-pixel positions for smooth small figures
_ONE = 1 << SHIFT
OCCLUDER_LABEL = 255
MAX_PEOPLE = 14  # label ids (person + 1) * 16 + part must stay below OCCLUDER_LABEL

SKIN_TONES_BGR = (
    (196, 224, 255),
    (125, 194, 241),
    (105, 172, 224),
    (66, 134, 198),
    (36, 85, 141),
    (38, 57, 89),
)
HAIR_BGR = ((20, 20, 25), (30, 45, 70), (40, 80, 130), (90, 160, 210), (170, 170, 170), (40, 60, 160))


@dataclass(frozen=True)
class Appearance:
    skin: tuple[int, int, int]
    hair: tuple[int, int, int]
    shirt: tuple[int, int, int]
    pants: tuple[int, int, int]
    shoes: tuple[int, int, int]
    pattern: str  # solid | stripes | dots
    pattern_colour: tuple[int, int, int]
    long_sleeves: bool
    long_trousers: bool
    long_hair: bool


def _clothing_colour(rng: np.random.Generator) -> tuple[int, int, int]:
    hue = int(rng.integers(0, 180))
    sat = int(rng.choice([int(rng.integers(0, 60)), int(rng.integers(60, 255))]))
    val = int(rng.integers(40, 250))
    bgr = cv2.cvtColor(np.array([[[hue, sat, val]]], np.uint8), cv2.COLOR_HSV2BGR)[0, 0]
    return int(bgr[0]), int(bgr[1]), int(bgr[2])


def sample_appearance(rng: np.random.Generator) -> Appearance:
    tone = rng.uniform(0, len(SKIN_TONES_BGR) - 1)
    lo, t = int(tone), tone - int(tone)
    hi = min(lo + 1, len(SKIN_TONES_BGR) - 1)
    skin = tuple(int(a + (b - a) * t) for a, b in zip(SKIN_TONES_BGR[lo], SKIN_TONES_BGR[hi], strict=True))
    hair = HAIR_BGR[int(rng.integers(len(HAIR_BGR)))] if rng.random() < 0.93 else skin
    return Appearance(
        skin=skin,
        hair=hair,
        shirt=_clothing_colour(rng),
        pants=_clothing_colour(rng),
        shoes=_clothing_colour(rng) if rng.random() < 0.5 else (30, 30, 30),
        pattern=str(rng.choice(["solid", "solid", "stripes", "dots"])),
        pattern_colour=_clothing_colour(rng),
        long_sleeves=bool(rng.random() < 0.6),
        long_trousers=bool(rng.random() < 0.75),
        long_hair=bool(rng.random() < 0.35),
    )


def _shade(colour: tuple[int, int, int], factor: float) -> tuple[int, int, int]:
    return tuple(int(min(255, c * factor + (12 if factor > 1 else 0))) for c in colour)


def _fixed(points: np.ndarray) -> np.ndarray:
    return np.round(points * _ONE).astype(np.int32)


def _capsule(img: np.ndarray, p0, p1, r0: float, r1: float, colour, line_type: int) -> None:
    """A tapered limb: a quad between two end circles."""
    d = p1 - p0
    length = math.hypot(d[0], d[1])
    if length > 1e-3:
        n = np.array([-d[1], d[0]]) / length
        quad = np.stack([p0 + n * r0, p1 + n * r1, p1 - n * r1, p0 - n * r0])
        cv2.fillConvexPoly(img, _fixed(quad), colour, line_type, SHIFT)
    for p, r in ((p0, r0), (p1, r1)):
        cv2.circle(img, tuple(_fixed(p)), max(int(r * _ONE), 1), colour, -1, line_type, SHIFT)


@dataclass
class PartShape:
    """One drawable part after projection: painted in order of ``depth``."""

    name: str
    kind: str  # capsule | polygon | head | seat
    depth: float
    points: np.ndarray  # (N, 2) pixels
    radii: tuple[float, float] = (0.0, 0.0)
    colour: tuple[int, int, int] = (0, 0, 0)


@dataclass
class ProjectedPerson:
    keypoints: np.ndarray  # (17, 2) pixels
    depth: np.ndarray  # (17,) camera depth in body units
    parts: list[PartShape]
    head_centre_depth: float
    torso_depth: float
    facing: np.ndarray  # (3,) head facing direction in camera coordinates


def _limb_colours(app: Appearance) -> dict[str, tuple[int, int, int]]:
    arm_lo = app.shirt if app.long_sleeves else app.skin
    leg_lo = app.pants if app.long_trousers else app.skin
    colours = {"torso": app.shirt, "neck": app.skin, "head": app.skin}
    for side in ("left", "right"):
        colours.update(
            {
                f"{side}_upper_arm": app.shirt,
                f"{side}_forearm": arm_lo,
                f"{side}_hand": app.skin,
                f"{side}_thigh": app.pants,
                f"{side}_shin": leg_lo,
                f"{side}_foot": app.shoes,
            }
        )
    return colours


def project_person(shape: BodyShape, body: Body3D, view: View, app: Appearance) -> ProjectedPerson:
    """Project a posed body into pixels and list its parts with their paint depth."""
    ppu = view.pixels_per_unit * shape.stature
    kp_uv, kp_depth = project(body.keypoints, view, shape.stature)
    names = list(body.points)
    pt_uv, pt_depth = project(np.stack([body.points[n] for n in names]), view, shape.stature)
    uv = dict(zip(COCO_KEYPOINT_NAMES, kp_uv, strict=True)) | dict(zip(names, pt_uv, strict=True))
    dp = dict(zip(COCO_KEYPOINT_NAMES, kp_depth, strict=True)) | dict(zip(names, pt_depth, strict=True))
    colours = _limb_colours(app)
    lw = shape.limb_width
    limbs = {  # part: (from, to, radius at from, radius at to) in body units
        "upper_arm": ("shoulder", "elbow", 0.36 * lw, 0.3 * lw),
        "forearm": ("elbow", "wrist", 0.3 * lw, 0.23 * lw),
        "thigh": ("hip", "knee", 0.56 * lw, 0.4 * lw),
        "shin": ("knee", "ankle", 0.38 * lw, 0.26 * lw),
        "foot": ("heel", "toe", 0.24 * lw, 0.22 * lw),
    }
    parts: list[PartShape] = []
    for side in ("left", "right"):
        for limb, (a, b, r0, r1) in limbs.items():
            name = f"{side}_{limb}"
            ja, jb = f"{side}_{a}", f"{side}_{b}"
            if limb == "foot":  # the foot starts between ankle and heel
                ankle = f"{side}_ankle"
                p0, d0 = (uv[ja] + uv[ankle]) / 2, (dp[ja] + dp[ankle]) / 2
            else:
                p0, d0 = uv[ja], dp[ja]
            parts.append(
                PartShape(
                    name,
                    "capsule",
                    (d0 + dp[jb]) / 2,
                    np.stack([p0, uv[jb]]),
                    (r0 * ppu, r1 * ppu),
                    colours[name],
                )
            )
        hand = f"{side}_hand"
        parts.append(
            PartShape(
                hand,
                "capsule",
                dp[hand] + 0.01,
                np.stack([uv[f"{side}_wrist"], uv[hand]]),
                (0.22 * lw * ppu, 0.3 * lw * ppu),
                colours[hand],
            )
        )
    torso_uv, torso_depth = project(body.torso_corners, view, shape.stature)
    torso_mean = float(torso_depth.mean())
    hull = cv2.convexHull(torso_uv.astype(np.float32)).reshape(-1, 2).astype(np.float64)
    parts.append(PartShape("torso", "polygon", torso_mean, hull, colour=colours["torso"]))
    neck_r = shape.head_width * 0.5 * ppu
    parts.append(
        PartShape(
            "neck",
            "capsule",
            dp["neck_base"] - 0.01,
            np.stack([uv["neck_base"], uv["neck_top"]]),
            (neck_r, neck_r),
            colours["neck"],
        )
    )
    rot = view_rotation(view)
    head_up = rot @ body.head_axes[:, 1]
    facing = rot @ body.head_axes[:, 2]
    up2d = np.array([head_up[0], -head_up[1]])
    major = max(shape.head_radius * math.hypot(*up2d), shape.head_width) * ppu
    angle = math.degrees(math.atan2(up2d[1], up2d[0])) + 90.0 if np.linalg.norm(up2d) > 1e-6 else 0.0
    head_pts = np.stack([uv["head_centre"], [major, shape.head_width * ppu], [angle, 0.0], uv["nose"]])
    parts.append(PartShape("head", "head", dp["head_centre"] + 0.05, head_pts, colour=app.skin))
    return ProjectedPerson(kp_uv, kp_depth, parts, float(dp["head_centre"]), torso_mean, facing)


def _draw_polygon(img, poly, colour, light, pattern: str, pattern_colour) -> None:
    x0, y0 = np.floor(poly.min(0)).astype(int) - 2
    x1, y1 = np.ceil(poly.max(0)).astype(int) + 3
    h, w = img.shape[:2]
    x0, y0, x1, y1 = max(x0, 0), max(y0, 0), min(x1, w), min(y1, h)
    if x1 <= x0 or y1 <= y0:
        return
    roi = img[y0:y1, x0:x1]
    local = poly - (x0, y0)
    mask = np.zeros(roi.shape[:2], np.uint8)
    cv2.fillPoly(mask, [_fixed(local)], 255, cv2.LINE_8, SHIFT)
    layer = roi.copy()
    layer[:] = _shade(colour, 0.7)
    centre, size = local.mean(0), float(np.ptp(local, 0).max())
    for scale, offset, factor in ((0.9, 0.06, 1.0), (0.5, 0.16, 1.18)):
        inner = centre + (local - centre) * scale + light * offset * size
        cv2.fillPoly(layer, [_fixed(inner)], _shade(colour, factor), cv2.LINE_AA, SHIFT)
    if pattern == "stripes" and size > 12:
        step = max(3, int(size / 7))
        for y in range(int(step / 2), layer.shape[0], step):
            cv2.line(layer, (0, y), (layer.shape[1], y), pattern_colour, max(1, step // 3), cv2.LINE_AA)
    elif pattern == "dots" and size > 12:
        step = max(4, int(size / 6))
        for y in range(step // 2, layer.shape[0], step):
            for x in range((y // step % 2) * step // 2, layer.shape[1], step):
                cv2.circle(layer, (x, y), max(1, step // 4), pattern_colour, -1, cv2.LINE_AA)
    np.copyto(roi, layer, where=mask[..., None] > 0)
    cv2.polylines(img, [_fixed(poly)], True, _shade(colour, 0.45), 1, cv2.LINE_AA, SHIFT)


def _draw_head(img, part: PartShape, person: ProjectedPerson, app: Appearance, light) -> None:
    centre, (major, minor), (angle, _), nose = part.points
    c, axes = tuple(_fixed(centre)), (max(int(minor * _ONE), 1), max(int(major * _ONE), 1))
    if app.long_hair:
        drop = centre + np.array([0.0, major * 0.55])
        axes_long = (max(int(minor * 1.08 * _ONE), 1), max(int(major * 1.05 * _ONE), 1))
        cv2.ellipse(img, tuple(_fixed(drop)), axes_long, angle, 0, 360, app.hair, -1, cv2.LINE_AA, SHIFT)
    cv2.ellipse(img, c, axes, angle, 0, 360, _shade(app.hair, 0.6), -1, cv2.LINE_AA, SHIFT)
    inner = (max(axes[0] - _ONE, 1), max(axes[1] - _ONE, 1))
    cv2.ellipse(img, c, inner, angle, 0, 360, app.hair, -1, cv2.LINE_AA, SHIFT)
    fx, fy, fz = person.facing
    if fz > -0.45:  # some face shows: skin shifted toward where the head faces, hairline on top
        shrink = 0.55 + 0.35 * min(1.0, (fz + 0.45) / 1.2)
        toward = np.array([fx, -fy]) * minor * (1.0 - shrink) * 1.3 + np.array([0.0, major * 0.16])
        face_c = tuple(_fixed(centre + toward))
        face_axes = (max(int(minor * shrink * _ONE), 1), max(int(major * 0.8 * _ONE), 1))
        cv2.ellipse(img, face_c, face_axes, angle, 0, 360, app.skin, -1, cv2.LINE_AA, SHIFT)
        if abs(fx) > 0.45 and minor > 2:  # profile: a nose bump
            cv2.circle(
                img, tuple(_fixed(nose)), max(int(minor * 0.22 * _ONE), 1), app.skin, -1, cv2.LINE_AA, SHIFT
            )
        if fz > 0.25 and minor > 5:
            for k in (1, 2):
                eye = person.keypoints[k]
                if person.depth[k] > person.head_centre_depth:
                    cv2.circle(
                        img,
                        tuple(_fixed(eye)),
                        max(int(minor * 0.1 * _ONE), 1),
                        (40, 30, 30),
                        -1,
                        cv2.LINE_AA,
                        SHIFT,
                    )
    hl = centre + light * minor * 0.35
    cv2.circle(
        img,
        tuple(_fixed(hl)),
        max(int(minor * 0.22 * _ONE), 1),
        _shade(app.skin if fz > 0 else app.hair, 1.12),
        -1,
        cv2.LINE_AA,
        SHIFT,
    )


def draw_person(
    img, labels, person: ProjectedPerson, app: Appearance, label_base: int, light, extra=()
) -> None:
    """Paint the person's parts (and ``extra`` parts such as a seat) back to front into both images."""
    for part in sorted([*person.parts, *extra], key=lambda p: p.depth):
        label = OCCLUDER_LABEL if part.kind == "seat" else label_base + PART_INDEX[part.name]
        if part.kind == "capsule":
            p0, p1 = part.points
            r0, r1 = part.radii
            _capsule(labels, p0, p1, r0, r1, label, cv2.LINE_8)
            if max(r0, r1) < 2.0:
                _capsule(img, p0, p1, r0 + 0.3, r1 + 0.3, part.colour, cv2.LINE_AA)
                continue
            n = np.array([-(p1 - p0)[1], (p1 - p0)[0]])
            n = n / (np.linalg.norm(n) + 1e-9)
            n = n if float(n @ light) >= 0 else -n
            _capsule(img, p0, p1, r0 + 0.8, r1 + 0.8, _shade(part.colour, 0.45), cv2.LINE_AA)
            _capsule(img, p0, p1, r0, r1, _shade(part.colour, 0.75), cv2.LINE_AA)
            _capsule(
                img, p0 + n * r0 * 0.2, p1 + n * r1 * 0.2, r0 * 0.78, r1 * 0.78, part.colour, cv2.LINE_AA
            )
            _capsule(
                img,
                p0 + n * r0 * 0.45,
                p1 + n * r1 * 0.45,
                r0 * 0.28,
                r1 * 0.28,
                _shade(part.colour, 1.2),
                cv2.LINE_AA,
            )
        elif part.kind in ("polygon", "seat"):
            cv2.fillPoly(labels, [_fixed(part.points)], label, cv2.LINE_8, SHIFT)
            pattern = app.pattern if part.name == "torso" else "solid"
            _draw_polygon(img, part.points, part.colour, light, pattern, app.pattern_colour)
        else:  # head
            centre, (major, minor), (angle, _), _nose = part.points
            axes = (max(int(minor * _ONE), 1), max(int(major * _ONE), 1))
            cv2.ellipse(labels, tuple(_fixed(centre)), axes, angle, 0, 360, label, -1, cv2.LINE_8, SHIFT)
            _draw_head(img, part, person, app, light)


def seat_parts(shape: BodyShape, body: Body3D, view: View, rng: np.random.Generator) -> list[PartShape]:
    """A chair, stool or bench under a seated body, projected with the body's view."""
    if body.seat_height is None:
        return []
    top = body.seat_height
    kind = rng.choice(["chair", "stool", "bench"])
    half_x = 0.32 if kind == "bench" else float(rng.uniform(0.13, 0.18))
    z0, z1 = -0.1, float(rng.uniform(0.12, 0.2))
    colour = tuple(int(c) for c in rng.integers(30, 220, 3))
    pelvis = body.points["pelvis"]

    def box(xa, xb, ya, yb, za, zb) -> np.ndarray:
        corners = np.array([[x, y, z] for x in (xa, xb) for y in (ya, yb) for z in (za, zb)]) + pelvis * [
            1,
            0,
            1,
        ]
        return corners

    boxes = [box(-half_x, half_x, top - 0.035, top, z0, z1)]
    if kind == "stool":
        boxes.append(box(-half_x * 0.9, half_x * 0.9, 0.0, top, z0 + 0.01, z1 - 0.01))
    else:
        leg = 0.018
        for x in (-half_x + leg, half_x - leg):
            for z in (z0 + leg, z1 - leg):
                boxes.append(box(x - leg, x + leg, 0.0, top, z - leg, z + leg))
    if kind == "chair" and rng.random() < 0.7:
        boxes.append(box(-half_x, half_x, top, top + float(rng.uniform(0.2, 0.35)), z0 - 0.03, z0))
    parts = []
    for i, corners in enumerate(boxes):
        uv, depth = project(corners, view, shape.stature)
        hull = cv2.convexHull(uv.astype(np.float32)).reshape(-1, 2).astype(np.float64)
        shade = 1.0 if i == 0 else 0.8
        parts.append(
            PartShape("seat", "seat", float(depth.mean()) - 0.02, hull, colour=_shade(colour, shade))
        )
    return parts


def joint_visibility(labels: np.ndarray, person: ProjectedPerson, label_base: int) -> np.ndarray:
    """COCO flags per joint: 0 outside the image, 1 hidden (by others or the own body), 2 seen."""
    h, w = labels.shape
    flags = np.zeros(17, np.int64)
    for k, name in enumerate(COCO_KEYPOINT_NAMES):
        x, y = person.keypoints[k]
        if not (0 <= x < w and 0 <= y < h):
            continue
        flags[k] = 1
        offset = person.depth[k]
        allowed = []
        for part in JOINT_PARTS[name]:
            if part == "head":
                # the far side of the head hides face points; ears sit on the silhouette
                limit = -0.012 if "ear" in name else -0.003
                if offset - person.head_centre_depth < limit * (1 if "nose" not in name else 3):
                    continue
            if part == "torso" and offset < person.torso_depth - 0.03:
                continue  # the torso covers the far shoulder/hip, it does not show it
            allowed.append(label_base + PART_INDEX[part])
        xi, yi = int(x), int(y)
        window = labels[max(yi - 1, 0) : yi + 2, max(xi - 1, 0) : xi + 2]
        if allowed and np.isin(window, allowed).any():
            flags[k] = 2
    return flags
