"""Drawing posed bodies: shaded limbs, torso and head, seats, and a label map for visibility.

Every person is drawn twice: anti-aliased and shaded into the BGR image, and flat into a
uint8 label map whose value ``(person + 1) * 16 + part`` says who covers each pixel. Parts are
painted back to front by depth, people back to front by distance, so the label map tells
honestly which joints are hidden (COCO v=1) and which are seen (v=2).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

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
    neckline: str = "v"  # v | round | crew: the skin opening at the top of the shirt's front
    shirt_front: str = "placket"  # placket | buttons | print: what marks the shirt's front


NECKLINES = ("v", "round", "crew")
SHIRT_FRONTS = ("placket", "buttons", "print")


def _clothing_colour(rng: np.random.Generator) -> tuple[int, int, int]:
    hue = int(rng.integers(0, 180))
    sat = int(rng.choice([int(rng.integers(0, 60)), int(rng.integers(60, 255))]))
    val = int(rng.integers(40, 250))
    bgr = cv2.cvtColor(np.array([[[hue, sat, val]]], np.uint8), cv2.COLOR_HSV2BGR)[0, 0]
    return int(bgr[0]), int(bgr[1]), int(bgr[2])


def sample_appearance(rng: np.random.Generator) -> Appearance:
    """A random look. The shirt's cut follows from its colours, so no rng draw is added or moved."""
    tone = rng.uniform(0, len(SKIN_TONES_BGR) - 1)
    lo, t = int(tone), tone - int(tone)
    hi = min(lo + 1, len(SKIN_TONES_BGR) - 1)
    skin = tuple(int(a + (b - a) * t) for a, b in zip(SKIN_TONES_BGR[lo], SKIN_TONES_BGR[hi], strict=True))
    hair = HAIR_BGR[int(rng.integers(len(HAIR_BGR)))] if rng.random() < 0.93 else skin
    shirt = _clothing_colour(rng)
    pants = _clothing_colour(rng)
    shoes = _clothing_colour(rng) if rng.random() < 0.5 else (30, 30, 30)
    pattern = str(rng.choice(["solid", "solid", "stripes", "dots"]))
    pattern_colour = _clothing_colour(rng)
    return Appearance(
        skin=skin,
        hair=hair,
        shirt=shirt,
        pants=pants,
        shoes=shoes,
        pattern=pattern,
        pattern_colour=pattern_colour,
        long_sleeves=bool(rng.random() < 0.6),
        long_trousers=bool(rng.random() < 0.75),
        long_hair=bool(rng.random() < 0.35),
        neckline=NECKLINES[(shirt[0] + 2 * shirt[1] + 3 * shirt[2]) % len(NECKLINES)],
        shirt_front=SHIRT_FRONTS[(pattern_colour[0] + 2 * pattern_colour[1] + pants[2]) % len(SHIRT_FRONTS)],
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
    # head frame columns (left, up, facing) in camera coordinates and the head's semi-axes
    # (width, height) in pixels: the face is painted on this ellipsoid
    head_axes: np.ndarray = field(default_factory=lambda: np.eye(3))
    head_size: tuple[float, float] = (0.0, 0.0)
    torso_facing: np.ndarray = field(default_factory=lambda: np.zeros(3))  # chest normal, camera coords
    torso_marks: list[tuple] = field(default_factory=list)  # (kind, points, colour, width): neckline...


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
    torso_facing, marks = _torso_marks(body, view, shape, app)
    return ProjectedPerson(
        kp_uv,
        kp_depth,
        parts,
        float(dp["head_centre"]),
        torso_mean,
        facing,
        head_axes=rot @ body.head_axes,
        head_size=(shape.head_width * ppu, shape.head_radius * ppu),
        torso_facing=torso_facing,
        torso_marks=marks,
    )


def _mix(a, b, t: float) -> tuple[int, int, int]:
    return tuple(int(round(x + (y - x) * t)) for x, y in zip(a, b, strict=True))


def _contrast(colour, amount: float) -> tuple[int, int, int]:
    """A darker shade of a light colour, a lighter one of a dark colour."""
    if sum(colour) > 300:
        return _shade(colour, 1.0 - amount)
    return _mix(colour, (235, 235, 235), amount * 0.8)


def _torso_marks(body: Body3D, view: View, shape: BodyShape, app: Appearance) -> tuple[np.ndarray, list]:
    """What tells a shirt's front from its back: a neckline and a placket, buttons or a print on the
    chest; only a collar line on the back. Laid on the chest (or back) plane in 3D and projected."""
    c = body.torso_corners  # per side: shoulder front, hip front, shoulder back, hip back
    sf, hf, sb = (c[0] + c[4]) / 2, (c[1] + c[5]) / 2, (c[2] + c[6]) / 2
    lat = (c[0] - c[4]) / (np.linalg.norm(c[0] - c[4]) + 1e-9)
    down = (hf - sf) / (np.linalg.norm(hf - sf) + 1e-9)
    fwd = (sf - sb) / (np.linalg.norm(sf - sb) + 1e-9)
    torso_facing = view_rotation(view) @ fwd
    ppu = view.pixels_per_unit * shape.stature
    marks: list[tuple] = []

    def uv(points) -> np.ndarray:
        return project(np.asarray(points, np.float64).reshape(-1, 3), view, shape.stature)[0]

    collar = _contrast(app.shirt, 0.45)
    if torso_facing[2] > 0.12:  # the chest faces the camera
        half = shape.head_width * (0.9 if app.neckline == "crew" else 1.25)
        deep = {"v": 0.32, "round": 0.17, "crew": 0.08}[app.neckline] * shape.torso
        top = (sf + body.points["neck_base"]) / 2 - down * 0.01
        if app.neckline == "v":
            edge = [sf + lat * half, sf + down * deep, sf - lat * half]
        else:
            t = np.linspace(0.0, math.pi, 9)
            edge = [sf + lat * half * math.cos(a) + down * deep * math.sin(a) for a in t]
        opening = uv([top + lat * half * 1.05, *edge, top - lat * half * 1.05])
        marks.append(("fill", opening, _shade(app.skin, 0.92), 0.0))
        marks.append(("line", uv(edge), collar, 0.006 * ppu))
        tip = sf + down * deep
        if app.shirt_front in ("placket", "buttons"):
            bottom = hf - down * 0.02
            marks.append(("line", uv([tip, bottom]), collar, 0.007 * ppu))
            if app.shirt_front == "buttons":
                n = 4
                dots = uv([tip + (bottom - tip) * (k + 0.5) / n for k in range(n)])
                button = (
                    _mix(app.shirt, (240, 240, 240), 0.6) if sum(app.shirt) < 450 else _shade(app.shirt, 0.4)
                )
                marks.extend(("dot", d[None], button, max(0.009 * ppu, 0.55)) for d in dots)
        else:  # a chest print
            ink = app.pattern_colour
            if sum(abs(a - b) for a, b in zip(ink, app.shirt, strict=True)) < 150:
                ink = _contrast(app.shirt, 0.7)
            centre = sf + down * (deep + 0.35 * (shape.torso - deep))
            r = 0.045
            t = np.linspace(0.0, 2 * math.pi, 12, endpoint=False)
            marks.append(
                ("fill", uv([centre + lat * r * math.cos(a) + down * r * math.sin(a) for a in t]), ink, 0.0)
            )
    elif torso_facing[2] < -0.12:  # the back: plain but for the collar seam
        half = shape.head_width * 1.3
        edge = [sb + lat * half + down * 0.01, sb + down * 0.025, sb - lat * half + down * 0.01]
        marks.append(("line", uv(edge), collar, 0.005 * ppu))
    return torso_facing, marks


def _draw_polygon(img, poly, colour, light, pattern: str, pattern_colour, marks=()) -> None:
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
    origin = np.array([x0, y0], np.float64)
    for kind, pts, mark_colour, width in marks:
        pts = _fixed(pts - origin)
        if kind == "fill":
            cv2.fillPoly(layer, [pts], mark_colour, cv2.LINE_AA, SHIFT)
        elif kind == "line":
            thick = max(1, int(round(width)))
            cv2.polylines(layer, [pts], False, mark_colour, thick, cv2.LINE_AA, SHIFT)
        else:
            cv2.circle(layer, tuple(pts[0]), max(int(width * _ONE), 1), mark_colour, -1, cv2.LINE_AA, SHIFT)
    np.copyto(roi, layer, where=mask[..., None] > 0)
    cv2.polylines(img, [_fixed(poly)], True, _shade(colour, 0.45), 1, cv2.LINE_AA, SHIFT)


def _soft(signed: np.ndarray, pixel: float) -> np.ndarray:
    """Coverage of a shape from a signed distance (positive inside) in units where a pixel is ``pixel``."""
    return np.clip(signed / pixel + 0.5, 0.0, 1.0)


def _blob(ux, uy, cx: float, cy: float, ax: float, ay: float, pixel: float) -> np.ndarray:
    """Coverage of an ellipse painted on the face (head-frame x/y of the front hemisphere)."""
    rho = np.sqrt(((ux - cx) / ax) ** 2 + ((uy - cy) / ay) ** 2)
    return _soft((1.0 - rho) * min(ax, ay), pixel)


def _head_colours(u: np.ndarray, app: Appearance, minor: float) -> np.ndarray:
    """Colour of each visible head point ``u`` (head frame, unit sphere: x left, y up, z facing).

    Hair on the crown and the back, a face on the front with eyes, brows, nose and mouth whose sizes
    follow the head but never drop below about a pixel, ears at the sides under short hair.
    """
    ux, uy, uz = u[..., 0], u[..., 1], u[..., 2]
    px = 1.0 / max(minor, 1.0)  # one pixel in head units
    side = 0.55 if app.long_hair else 0.3
    skin = np.minimum(0.52 - side * ux**2 - uy, uz + (-0.05 if app.long_hair else 0.12))
    if not app.long_hair:  # ears just behind the face
        ear = np.minimum(np.hypot(np.abs(ux) - 0.97, uy + 0.02), 9.0)
        skin = np.maximum(skin, np.minimum(0.28 - np.hypot(ear, uz + 0.15), 0.28 - ear))
    w = _soft(skin, px)[..., None]
    out = np.asarray(app.hair, np.float64) * (1.0 - w) + np.asarray(app.skin, np.float64) * w
    if minor < 1.6:
        return out
    front = np.clip((uz - 0.1) / px, 0.0, 1.0)  # features sit on the front half of the head only
    skin_dark = np.asarray(_shade(app.skin, 0.55), np.float64)
    brow = app.hair if app.hair != app.skin else _shade(app.skin, 0.6)
    lips = _mix(_shade(app.skin, 0.62), (70, 60, 170), 0.35)
    thin = max(0.055, 0.5 * px)
    eye_r = max(0.11, 0.62 * px)
    features: list[tuple[np.ndarray, object]] = []
    features.append((_blob(ux, uy, 0.0, -0.17, max(0.07, 0.4 * px), 0.17, px), _shade(app.skin, 0.78)))
    features.append((_blob(ux, uy, 0.0, -0.53, 0.25, thin, px), lips))
    if minor >= 5:
        for x in (-0.43, 0.43):
            features.append((_blob(ux, uy, x, 0.36, 0.2, thin, px), brow))
    for x in (-0.43, 0.43):
        if minor >= 9:  # white of the eye around a dark iris
            features.append((_blob(ux, uy, x, 0.14, 0.17, 0.1, px), (235, 238, 240)))
            features.append((_blob(ux, uy, x, 0.14, 0.085, 0.085, px), (45, 35, 30)))
        else:
            features.append((_blob(ux, uy, x, 0.14, eye_r * 1.15, eye_r, px), (40, 30, 30)))
    if minor >= 6 and not app.long_hair:  # the rim of each ear
        ring = np.abs(np.hypot(uz + 0.15, uy + 0.02) - 0.17)
        rim = _soft(thin * 0.6 - ring, px) * (np.abs(ux) > 0.8)
        out = out * (1.0 - rim[..., None]) + np.asarray(_shade(app.skin, 0.72), np.float64) * rim[..., None]
    if minor >= 9:  # nostrils and a chin shadow
        for x in (-0.07, 0.07):
            features.append((_blob(ux, uy, x, -0.32, 0.045, 0.03, px), skin_dark))
        features.append((_blob(ux, uy, 0.0, -0.85, 0.3, 0.06, px), _shade(app.skin, 0.82)))
    for cover, colour in features:
        a = (cover * front)[..., None]
        out = out * (1.0 - a) + np.asarray(colour, np.float64) * a
    return out


def _draw_head(img, part: PartShape, person: ProjectedPerson, app: Appearance, light) -> None:
    centre, (major, minor), (angle, _), nose = part.points
    if app.long_hair:
        drop = centre + np.array([0.0, major * 0.55])
        axes_long = (max(int(minor * 1.08 * _ONE), 1), max(int(major * 1.05 * _ONE), 1))
        cv2.ellipse(img, tuple(_fixed(drop)), axes_long, angle, 0, 360, app.hair, -1, cv2.LINE_AA, SHIFT)
        neck = next((p for p in person.parts if p.name == "neck"), None)
        if (
            neck is not None and person.torso_facing[2] > 0.2
        ):  # seen from the front, hair falls behind the neck
            base, top = neck.points
            r = neck.radii[0] * 0.95
            _capsule(img, top, (base + top) / 2, r, r, _shade(neck.colour, 0.85), cv2.LINE_AA)
    reach = max(major, minor) + 2.0
    h, w = img.shape[:2]
    x0, y0 = max(int(math.floor(centre[0] - reach)), 0), max(int(math.floor(centre[1] - reach)), 0)
    x1, y1 = min(int(math.ceil(centre[0] + reach)) + 1, w), min(int(math.ceil(centre[1] + reach)) + 1, h)
    if x1 > x0 and y1 > y0:
        roi = img[y0:y1, x0:x1]
        mask = np.zeros(roi.shape[:2], np.uint8)
        axes = (max(int(minor * _ONE), 1), max(int(major * _ONE), 1))
        cv2.ellipse(mask, tuple(_fixed(centre - (x0, y0))), axes, angle, 0, 360, 255, -1, cv2.LINE_AA, SHIFT)
        # Cast each pixel onto the head ellipsoid (orthographic, nearest surface point)
        hw, hr = person.head_size if person.head_size[0] > 0 else (minor, major)
        frame = person.head_axes * np.array([[1.0], [-1.0], [1.0]])  # camera -> image axes (y down)
        inv = np.linalg.inv(frame * [hw, hr, hw])  # image pixel offset -> unit-sphere head point
        xs = np.arange(x0, x1, dtype=np.float64) - centre[0]
        ys = np.arange(y0, y1, dtype=np.float64) - centre[1]
        q = inv[None, None, :, 0] * xs[None, :, None] + inv[None, None, :, 1] * ys[:, None, None]
        dz = inv[:, 2]
        a = float(dz @ dz)
        b = 2.0 * (q @ dz)
        c = (q * q).sum(-1) - 1.0
        z = (-b + np.sqrt(np.maximum(b * b - 4 * a * c, 0.0))) / (2 * a)  # image z points to the camera
        u = q + dz * z[..., None]
        u /= np.linalg.norm(u, axis=-1, keepdims=True) + 1e-9
        colour = _head_colours(u, app, minor)
        normal = (u / [hw, hr, hw]) @ frame.T
        normal /= np.linalg.norm(normal, axis=-1, keepdims=True) + 1e-9
        lit = normal[..., 0] * light[0] + normal[..., 1] * light[1]
        shade = 0.74 + 0.24 * np.clip(normal[..., 2], 0.0, 1.0) + 0.2 * np.clip(lit, 0.0, 1.0)
        alpha = (mask.astype(np.float64) / 255.0)[..., None]
        out = roi * (1.0 - alpha) + np.clip(colour * shade[..., None], 0, 255) * alpha
        roi[:] = out.astype(np.uint8)
    fx, _, fz = person.facing
    if abs(fx) > 0.45 and fz > -0.45 and minor > 1.6:  # profile: the nose sticks out of the outline
        r = max(minor * 0.22, 0.7)
        cv2.circle(img, tuple(_fixed(nose)), int(r * _ONE), _shade(app.skin, 0.92), -1, cv2.LINE_AA, SHIFT)


def _draw_toe(img, heel, toe, radius: float, colour, small: bool) -> None:
    """A lighter toe cap and a sole line, so a shoe shows which way it points."""
    cap = _mix(colour, (235, 235, 235), 0.5)
    d = toe - heel
    if small:
        r = max(radius * 0.85 + 0.2, 0.6)
        cv2.circle(img, tuple(_fixed(toe + d * 0.04)), int(r * _ONE), cap, -1, cv2.LINE_AA, SHIFT)
        return
    _capsule(img, toe - d * 0.18, toe, radius * 0.8, radius * 0.8, cap, cv2.LINE_AA)
    n = np.array([-d[1], d[0]]) / (np.linalg.norm(d) + 1e-9)
    n = n if n[1] >= 0 else -n  # the sole is the lower edge in the picture
    sole = _mix(colour, (235, 235, 235), 0.75) if sum(colour) < 380 else _shade(colour, 0.35)
    line = np.stack([heel + n * radius * 0.8, toe + n * radius * 0.8])
    thick = max(1, int(round(radius * 0.25)))
    cv2.polylines(img, [_fixed(line)], False, sole, thick, cv2.LINE_AA, SHIFT)


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
                if part.name.endswith("_foot"):
                    _draw_toe(img, p0, p1, r1, part.colour, small=True)
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
            if part.name.endswith("_foot"):
                _draw_toe(img, p0, p1, r1, part.colour, small=False)
        elif part.kind in ("polygon", "seat"):
            cv2.fillPoly(labels, [_fixed(part.points)], label, cv2.LINE_8, SHIFT)
            torso = part.name == "torso"
            pattern = app.pattern if torso else "solid"
            marks = person.torso_marks if torso else ()
            _draw_polygon(img, part.points, part.colour, light, pattern, app.pattern_colour, marks)
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
