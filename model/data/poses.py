"""Articulated 3D bodies: proportions, per-activity joint angles, forward kinematics, camera views.

Body frame: x to the person's left, y up, z forward (the way the person faces); lengths are
fractions of the person's standing height. A camera yaw of 0 shows the person's front, 90 a
side, 45 a three-quarter view; the projection is orthographic with a little camera elevation.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np

from model.data.skeleton import DEFAULT_ACTIVITIES, KEYPOINT_INDEX

SIDES = (("left", 1.0), ("right", -1.0))


@dataclass(frozen=True)
class BodyShape:
    """Segment lengths and widths as fractions of standing height; ``stature`` is height vs an adult."""

    stature: float
    head_radius: float  # vertical semi-axis of the head
    head_width: float  # horizontal semi-axis
    neck: float
    torso: float  # hip centre to shoulder centre
    shoulder_half_width: float
    hip_half_width: float
    torso_thickness: float
    upper_arm: float
    forearm: float
    hand: float
    thigh: float
    shin: float
    ankle_height: float
    foot: float
    limb_width: float  # thigh width at the hip; the other widths scale from it


def sample_body_shape(rng: np.random.Generator) -> BodyShape:
    """Children (large head, short legs) to adults, thin to heavy builds."""
    maturity = 1.0 if rng.random() < 0.6 else float(rng.uniform(0.0, 1.0))  # 0: toddler-ish, 1: adult

    def lerp(child: float, adult: float, jitter: float = 0.04) -> float:
        return (child + (adult - child) * maturity) * float(rng.uniform(1 - jitter, 1 + jitter))

    build = float(rng.uniform(0.8, 1.3))
    broad = float(rng.uniform(0.88, 1.12))  # shoulder-to-hip ratio (male/female-ish)
    return BodyShape(
        stature=lerp(0.55, 1.0, 0.06),
        head_radius=lerp(0.095, 0.064),
        head_width=lerp(0.082, 0.05),
        neck=lerp(0.02, 0.035),
        torso=lerp(0.3, 0.3),
        shoulder_half_width=lerp(0.105, 0.12) * broad,
        hip_half_width=lerp(0.075, 0.083) / broad**0.5,
        torso_thickness=lerp(0.11, 0.12) * build,
        upper_arm=lerp(0.16, 0.18),
        forearm=lerp(0.13, 0.15),
        hand=lerp(0.08, 0.09),
        thigh=lerp(0.2, 0.245),
        shin=lerp(0.2, 0.245),
        ankle_height=0.04,
        foot=lerp(0.11, 0.13),
        limb_width=lerp(0.075, 0.075) * build,
    )


@dataclass(frozen=True)
class Pose:
    """Joint angles in degrees; per-side values are (left, right)."""

    lean: float = 0.0  # torso pitch forward
    roll: float = 0.0  # torso side bend
    twist: float = 0.0  # shoulders' yaw relative to hips
    head_pitch: float = 0.0  # looking down is positive
    head_yaw: float = 0.0
    hip_flex: tuple[float, float] = (0.0, 0.0)  # thigh forward
    hip_abd: tuple[float, float] = (3.0, 3.0)  # thigh outward
    knee_flex: tuple[float, float] = (0.0, 0.0)
    shoulder_flex: tuple[float, float] = (0.0, 0.0)  # arm forward
    shoulder_abd: tuple[float, float] = (8.0, 8.0)  # arm outward
    elbow_flex: tuple[float, float] = (10.0, 10.0)
    lift: float = 0.0  # extra height off the ground (running flight)
    seated: bool = False  # pelvis rests on a seat; feet stay on the ground when they can


def lerp_pose(a: Pose, b: Pose, t: float) -> Pose:
    """Blend two poses joint by joint (sequences use it for sitting down and standing up)."""

    def mix(x: float | tuple, y: float | tuple) -> float | tuple:
        if isinstance(x, tuple):
            return tuple(p + (q - p) * t for p, q in zip(x, y, strict=True))
        return x + (y - x) * t

    fields = {f: mix(getattr(a, f), getattr(b, f)) for f in Pose.__dataclass_fields__ if f != "seated"}
    return Pose(**fields, seated=b.seated if t >= 0.5 else a.seated)


def _u(rng: np.random.Generator, low: float, high: float) -> float:
    return float(rng.uniform(low, high))


def gait_pose(rng: np.random.Generator, phase: float, running: bool) -> Pose:
    """Walking or running at gait ``phase`` (radians); ranges overlap at a jog / brisk walk.

    The left thigh is forward for sin(phase) > 0. Continuous in ``phase`` for a fixed ``rng`` state, so
    sequences can advance the phase frame by frame.
    """
    s, c = math.sin(phase), math.cos(phase)
    if running:
        stride, offset, swing_knee = _u(rng, 24, 45), _u(rng, 5, 15), _u(rng, 60, 115)
        stance_knee, push_knee, arm_swing = _u(rng, 12, 35), _u(rng, 10, 25), _u(rng, 25, 55)
        elbow, lean, lift = _u(rng, 70, 110), _u(rng, 8, 20), max(0.0, _u(rng, -0.01, 0.05)) * abs(c)
        hip_abd = (_u(rng, 0, 6), _u(rng, 0, 6))
    else:
        stride, offset, swing_knee = _u(rng, 16, 30), _u(rng, 0, 6), _u(rng, 30, 70)
        stance_knee, push_knee, arm_swing = _u(rng, 0, 10), _u(rng, 15, 35), _u(rng, 12, 30)
        elbow, lean, lift = _u(rng, 8, 40), _u(rng, -2, 5), 0.0
        hip_abd = (_u(rng, 0, 4), _u(rng, 0, 4))  # feet land near one line, narrower than a stance

    def knee(side_sign: float) -> float:
        # the leg swinging forward bends (a walker's most while its thigh is still behind, so the foot
        # clears the ground and then reaches forward); the trailing leg bends as its heel lifts
        swinging, trailing = max(0.0, side_sign * c), max(0.0, -side_sign * s)
        early_swing = 1.0 if running else 0.5 - 0.5 * side_sign * s
        return stance_knee + swing_knee * swinging**1.2 * early_swing + push_knee * trailing**2

    return Pose(
        lean=lean,
        roll=_u(rng, -3, 3),
        twist=-arm_swing * 0.15 * s,
        head_pitch=_u(rng, -8, 12),
        head_yaw=_u(rng, -20, 20),
        hip_flex=(offset + stride * s, offset - stride * s),
        hip_abd=hip_abd,
        knee_flex=(knee(1.0), knee(-1.0)),
        shoulder_flex=(-arm_swing * s + _u(rng, -4, 8), arm_swing * s + _u(rng, -4, 8)),
        shoulder_abd=(_u(rng, 4, 18), _u(rng, 4, 18)),
        elbow_flex=(
            elbow + _u(rng, -10, 10) + max(0.0, -s) * 15,
            elbow + _u(rng, -10, 10) + max(0.0, s) * 15,
        ),
        lift=lift,
    )


# A still frame of a walker is drawn away from mid-stance, where the legs pass each other and the
# frame looks like standing: |sin(phase)| >= this keeps a stride (thighs >= ~14 deg apart) in view.
WALK_MIN_STRIDE_SIN = 0.45


def still_gait_phase(rng: np.random.Generator, min_sin: float) -> float:
    """A gait phase with |sin(phase)| >= ``min_sin``, either leg forward."""
    edge = math.asin(min_sin)
    return _u(rng, edge, math.pi - edge) + (math.pi if rng.random() < 0.5 else 0.0)


def standing_pose(rng: np.random.Generator) -> Pose:
    weight = _u(rng, -1, 1)  # weight shift: one leg relaxed
    # mostly feet side by side; sometimes a foot set a little forward (still narrower than a stride)
    step = _u(rng, -4, 9) if rng.random() < 0.15 else _u(rng, -3, 4)
    arms = rng.choice(["side", "side", "hips", "front", "wave", "pocket"])
    flex, abd, elbow = [_u(rng, -8, 15), _u(rng, -8, 15)], [_u(rng, 4, 18), _u(rng, 4, 18)], [0.0, 0.0]
    elbow = [_u(rng, 0, 30), _u(rng, 0, 30)]
    if arms == "hips":
        for i in (0, 1) if rng.random() < 0.6 else (int(rng.integers(2)),):
            flex[i], abd[i], elbow[i] = _u(rng, -25, -5), _u(rng, 30, 50), _u(rng, 90, 125)
    elif arms == "front":  # holding a phone / hands together
        for i in (0, 1):
            flex[i], abd[i], elbow[i] = _u(rng, 10, 40), _u(rng, -5, 10), _u(rng, 70, 120)
    elif arms == "wave":
        i = int(rng.integers(2))
        flex[i], abd[i], elbow[i] = _u(rng, 100, 170), _u(rng, 10, 60), _u(rng, 10, 70)
    elif arms == "pocket":
        for i in (0, 1):
            flex[i], abd[i], elbow[i] = _u(rng, -15, 0), _u(rng, 8, 18), _u(rng, 20, 45)
    return Pose(
        lean=_u(rng, -4, 6),
        roll=_u(rng, -4, 4),
        twist=_u(rng, -10, 10),
        head_pitch=_u(rng, -10, 20),
        head_yaw=_u(rng, -35, 35),
        hip_flex=(step + _u(rng, -2, 2), _u(rng, -3, 4)),
        hip_abd=(_u(rng, 2, 9) + 4 * max(weight, 0), _u(rng, 2, 9) + 4 * max(-weight, 0)),
        knee_flex=(_u(rng, 0, 8) + 10 * max(weight, 0), _u(rng, 0, 8) + 10 * max(-weight, 0)),
        shoulder_flex=(flex[0], flex[1]),
        shoulder_abd=(abd[0], abd[1]),
        elbow_flex=(elbow[0], elbow[1]),
    )


def sitting_pose(rng: np.random.Generator, on_ground: bool | None = None) -> Pose:
    if on_ground is None:
        on_ground = bool(rng.random() < 0.25)
    if on_ground:
        hug = rng.random() < 0.5  # knees pulled up vs legs stretched out
        hip = (_u(rng, 95, 125), _u(rng, 95, 125)) if hug else (_u(rng, 70, 95), _u(rng, 70, 95))
        knee = (_u(rng, 100, 140), _u(rng, 100, 140)) if hug else (_u(rng, 0, 45), _u(rng, 0, 60))
        lean = _u(rng, -15, 10)
    else:
        hip = (_u(rng, 65, 105), _u(rng, 65, 105))
        knee = (_u(rng, 60, 110), _u(rng, 60, 110))
        lean = _u(rng, -12, 18)
    elbow = (_u(rng, 20, 100), _u(rng, 20, 100))
    return Pose(
        lean=lean,
        roll=_u(rng, -5, 5),
        twist=_u(rng, -12, 12),
        head_pitch=_u(rng, -10, 25),
        head_yaw=_u(rng, -35, 35),
        hip_flex=hip,
        hip_abd=(_u(rng, 2, 18), _u(rng, 2, 18)),
        knee_flex=knee,
        shoulder_flex=(_u(rng, -5, 45), _u(rng, -5, 45)),
        shoulder_abd=(_u(rng, 5, 25), _u(rng, 5, 25)),
        elbow_flex=elbow,
        seated=True,
    )


def sample_pose(rng: np.random.Generator, activity: str) -> Pose:
    if activity == "walking":
        return gait_pose(rng, still_gait_phase(rng, WALK_MIN_STRIDE_SIN), running=False)
    if activity == "running":
        return gait_pose(rng, _u(rng, 0, 2 * math.pi), running=True)
    if activity == "sitting":
        return sitting_pose(rng)
    if activity == "standing":
        return standing_pose(rng)
    raise ValueError(f"unknown activity {activity!r}; expected one of {DEFAULT_ACTIVITIES}")


# ---------------------------------------------------------------- kinematics


def _pitch(deg: float) -> np.ndarray:
    """Rotation about x taking 'down' towards 'forward' for positive angles."""
    c, s = math.cos(math.radians(deg)), math.sin(math.radians(deg))
    return np.array([[1.0, 0.0, 0.0], [0.0, c, s], [0.0, -s, c]])


def _roll(deg: float) -> np.ndarray:
    """Rotation about z taking 'down' towards +x (the person's left) for positive angles."""
    c, s = math.cos(math.radians(deg)), math.sin(math.radians(deg))
    return np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])


def _yaw(deg: float) -> np.ndarray:
    c, s = math.cos(math.radians(deg)), math.sin(math.radians(deg))
    return np.array([[c, 0.0, s], [0.0, 1.0, 0.0], [-s, 0.0, c]])


_DOWN = np.array([0.0, -1.0, 0.0])
_UP = np.array([0.0, 1.0, 0.0])


@dataclass
class Body3D:
    """Joint positions of one posed body (ground at y=0), in body units."""

    keypoints: np.ndarray  # (17, 3)
    points: dict[str, np.ndarray]  # extra points the renderer needs (toes, hands, head centre, ...)
    torso_corners: np.ndarray  # (8, 3) front/back of shoulders and hips
    head_axes: np.ndarray  # (3, 3) head frame columns: x (left), y (up), z (facing)
    seat_height: float | None  # top of the seat under a seated body (None on the ground / standing)


def pose_body(shape: BodyShape, pose: Pose) -> Body3D:
    """Forward kinematics: joint angles -> 3D joints, then the body is stood (or sat) on the ground."""
    kp = np.zeros((17, 3))
    pts: dict[str, np.ndarray] = {}
    torso_frame = _yaw(pose.twist * 0.5) @ _pitch(-pose.lean) @ _roll(pose.roll)
    shoulder_centre = torso_frame @ (_UP * shape.torso)
    half_depth = shape.torso_thickness / 2
    corners = []
    for i, (side, sign) in enumerate(SIDES):
        hip = np.array([sign * shape.hip_half_width, 0.0, 0.0])
        thigh_frame = _roll(sign * pose.hip_abd[i])
        knee = hip + thigh_frame @ _pitch(pose.hip_flex[i]) @ _DOWN * shape.thigh
        shin_pitch = pose.hip_flex[i] - pose.knee_flex[i]
        ankle = knee + thigh_frame @ _pitch(shin_pitch) @ _DOWN * shape.shin
        foot_dir = _yaw(sign * 12) @ thigh_frame @ _pitch(max(shin_pitch, -30) + 90 - 10) @ _DOWN
        pts[f"{side}_toe"] = ankle + foot_dir * shape.foot + _DOWN * shape.ankle_height * 0.6
        pts[f"{side}_heel"] = ankle + _DOWN * shape.ankle_height
        kp[KEYPOINT_INDEX[f"{side}_hip"]] = hip
        kp[KEYPOINT_INDEX[f"{side}_knee"]] = knee
        kp[KEYPOINT_INDEX[f"{side}_ankle"]] = ankle

        shoulder = shoulder_centre + torso_frame @ np.array([sign * shape.shoulder_half_width, -0.01, 0.0])
        arm_frame = torso_frame @ _roll(sign * pose.shoulder_abd[i])
        elbow = shoulder + arm_frame @ _pitch(pose.shoulder_flex[i]) @ _DOWN * shape.upper_arm
        forearm_dir = arm_frame @ _pitch(pose.shoulder_flex[i] + pose.elbow_flex[i]) @ _DOWN
        wrist = elbow + forearm_dir * shape.forearm
        pts[f"{side}_hand"] = wrist + forearm_dir * shape.hand * 0.55
        kp[KEYPOINT_INDEX[f"{side}_shoulder"]] = shoulder
        kp[KEYPOINT_INDEX[f"{side}_elbow"]] = elbow
        kp[KEYPOINT_INDEX[f"{side}_wrist"]] = wrist
        for front in (half_depth, -half_depth * 0.8):
            corners.append(shoulder + torso_frame @ np.array([sign * 0.02, 0.0, front]))
            corners.append(hip + np.array([sign * 0.015, -0.02, front * 0.9]))

    head_frame = torso_frame @ _yaw(pose.twist * 0.5 + pose.head_yaw) @ _pitch(-pose.head_pitch)
    neck_base = shoulder_centre + torso_frame @ np.array([0.0, 0.0, 0.01])
    neck_top = neck_base + torso_frame @ _UP * shape.neck
    head_centre = neck_top + head_frame @ _UP * shape.head_radius * 0.9
    r, w = shape.head_radius, shape.head_width
    face = {
        "nose": (0.0, -0.15 * r, 0.95 * w),
        "left_eye": (0.38 * w, 0.12 * r, 0.78 * w),
        "right_eye": (-0.38 * w, 0.12 * r, 0.78 * w),
        "left_ear": (0.85 * w, 0.0, -0.1 * w),
        "right_ear": (-0.85 * w, 0.0, -0.1 * w),
    }
    for name, offset in face.items():
        kp[KEYPOINT_INDEX[name]] = head_centre + head_frame @ np.array(offset)
    pts["neck_base"], pts["neck_top"], pts["head_centre"] = neck_base, neck_top, head_centre
    pts["pelvis"] = np.zeros(3)

    # Stand the body on the ground: the lowest foot point touches y=0 (plus flight for runners).
    feet_y = min(pts["left_toe"][1], pts["right_toe"][1], pts["left_heel"][1], pts["right_heel"][1])
    seat_height = None
    if pose.seated:
        seat_clearance = shape.limb_width * 0.45  # buttocks below the hip joints
        seat_y = -seat_clearance
        ground = -feet_y  # pelvis height that puts the feet on the floor
        if ground < seat_clearance + 0.05:  # legs stretched out or pulled up: sit on the floor
            ground, seat_height = seat_clearance, None
        else:
            seat_height = ground + seat_y
        lift = ground
    else:
        lift = -feet_y + pose.lift
    offset = np.array([0.0, lift, 0.0])
    kp += offset
    for name in pts:
        pts[name] = pts[name] + offset
    torso = np.stack(corners) + offset
    return Body3D(kp, pts, torso, head_frame, seat_height)


@dataclass(frozen=True)
class View:
    """How the camera sees one person: facing direction, elevation, pixel scale and ground point."""

    yaw: float  # degrees; 0 = facing the camera, 90 = the person's left side toward the camera
    elevation: float  # degrees the camera looks down
    pixels_per_unit: float  # pixels per body-height unit (an adult's height in pixels)
    ground_x: float  # image position of the point under the pelvis
    ground_y: float

    def moved(self, **changes: float) -> View:
        return replace(self, **changes)


def view_rotation(view: View) -> np.ndarray:
    """Body frame -> camera frame (x right, y up, z toward the camera)."""
    e = math.radians(view.elevation)
    ce, se = math.cos(e), math.sin(e)
    elevation = np.array([[1.0, 0.0, 0.0], [0.0, ce, -se], [0.0, se, ce]])
    return elevation @ _yaw(view.yaw)


def project(points: np.ndarray, view: View, stature: float) -> tuple[np.ndarray, np.ndarray]:
    """(N, 3) body points -> (N, 2) image pixels and (N,) depth (larger = nearer the camera)."""
    cam = points @ view_rotation(view).T
    scale = view.pixels_per_unit * stature
    uv = np.empty((len(points), 2))
    uv[:, 0] = view.ground_x + cam[:, 0] * scale
    uv[:, 1] = view.ground_y - cam[:, 1] * scale
    return uv, cam[:, 2]
