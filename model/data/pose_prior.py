"""``--pose-prior coco-sp``: the generator's poses with arms and torso taken from real COCO people.

The real poses (``model.data.coco_sp``: 987 COCO val2017 people, 2D keypoints only) cannot be drawn
as they are — the generator poses 3D bodies by joint angles and views them from any side — so each
real pose is *lifted* to the generator's upper-body joint angles and then *re-posed per activity*:

1. Lifting (once per real pose, ``upper_body_from_keypoints``). In the real crop the torso axis
   (shoulder centre -> hip centre) gives "down"; each upper arm's 2D direction is measured against it,
   sideways (away from the body's midline) and forwards (towards the nose, in side views). How frontal
   the real person is comes from shoulder width / torso length; a frontal view shows abduction, a
   side view shows flexion, and a 2D upper arm shorter than its expected length (0.6 torso) points
   out of the picture — read as forward in frontal views, sideways in side views. The blended 3D arm
   direction gives shoulder flexion and abduction; the 2D elbow angle gives elbow flexion; the torso's
   tilt gives side bend (frontal share) and lean (side share, clipped). Poses without both shoulders,
   both hips and an elbow (90 of 987) are skipped; an arm without its elbow (or wrist) keeps the
   generator's angle (or elbow bend).
2. Re-posing (``CocoSpPosePrior.sample_pose``). The activity's own sampler (``poses.sample_pose``)
   gives legs, gait phase, running lean and flight, head and seat — so activities stay what they are —
   then a random real pose, mirrored half the time, replaces the arms: standing and sitting take the
   real arms as they are; walking adds the gait's arm swing to them; running halves the real flexion,
   adds the runner's swing, keeps the elbows at least as bent as a runner's and the arms no wider than
   45 degrees. The real torso tilt is added to the activity's lean and roll.

Body proportions keep the generator's ranges: 2D crops foreshorten limbs too much to read lengths.
The default generator (no prior) is untouched and stays byte-identical for a seed.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from dataclasses import dataclass, replace

import numpy as np

from model.data.poses import Pose, sample_pose
from model.data.skeleton import KEYPOINT_INDEX

POSE_PRIORS = ("coco-sp",)
PoseSampler = Callable[[np.random.Generator, str], Pose]

UPPER_ARM_PER_TORSO = 0.6  # generator's adult upper arm (0.18) / torso (0.3): expected 2D arm length
FRONTAL_SHOULDERS_PER_TORSO = (0.15, 0.65)  # side view .. frontal view (an adult's front is ~0.8)
MAX_ELBOW_FLEX = 150.0
RUNNING_MAX_ABDUCTION = 45.0

_K = KEYPOINT_INDEX


@dataclass(frozen=True)
class ArmAngles:
    """One arm lifted from a real pose, in the generator's joint angles (degrees)."""

    flex: float
    abd: float
    elbow: float | None  # None where the wrist is not labelled


@dataclass(frozen=True)
class UpperBodyPrior:
    """Arms (left, right; None where the elbow is unlabelled) and torso tilt of one real pose."""

    arms: tuple[ArmAngles | None, ArmAngles | None]
    roll: float
    lean: float

    def mirrored(self) -> UpperBodyPrior:
        return UpperBodyPrior((self.arms[1], self.arms[0]), -self.roll, self.lean)


def _unit(v: np.ndarray) -> np.ndarray:
    n = float(np.linalg.norm(v))
    return v / n if n > 1e-9 else np.zeros_like(v)


def _angle(v: np.ndarray, down: np.ndarray, across: np.ndarray) -> float:
    """Degrees from ``down`` towards ``across`` (both unit 2D vectors)."""
    return math.degrees(math.atan2(float(v @ across), float(v @ down)))


def upper_body_from_keypoints(keypoints: np.ndarray) -> UpperBodyPrior | None:
    """Lift one real (17, 3) COCO pose to arm and torso angles; None without shoulders, hips and an elbow."""
    kp = np.asarray(keypoints, np.float64)
    if kp.shape != (17, 3):
        raise ValueError(f"keypoints must have shape (17, 3), got {kp.shape}")
    labelled = kp[:, 2] > 0
    core = [_K[n] for n in ("left_shoulder", "right_shoulder", "left_hip", "right_hip")]
    if not labelled[core].all() or not (labelled[_K["left_elbow"]] or labelled[_K["right_elbow"]]):
        return None
    xy = kp[:, :2]
    shoulders = (xy[_K["left_shoulder"]] + xy[_K["right_shoulder"]]) / 2
    hips = (xy[_K["left_hip"]] + xy[_K["right_hip"]]) / 2
    torso = float(np.linalg.norm(hips - shoulders))
    if torso < 1.0:
        return None
    down = (hips - shoulders) / torso
    perp = np.array([-down[1], down[0]])
    low, high = FRONTAL_SHOULDERS_PER_TORSO
    shoulder_width = float(np.linalg.norm(xy[_K["left_shoulder"]] - xy[_K["right_shoulder"]]))
    frontal = float(np.clip((shoulder_width / torso - low) / (high - low), 0.0, 1.0))
    # facing direction in the picture (matters in side views): towards the nose, else towards the arms
    forward_sign = 0.0
    if labelled[_K["nose"]]:
        forward_sign = float(np.sign((xy[_K["nose"]] - shoulders) @ perp))
    if forward_sign == 0.0:
        reach = sum(
            (xy[_K[f"{s}_elbow"]] - xy[_K[f"{s}_shoulder"]]) @ perp
            for s in ("left", "right")
            if labelled[_K[f"{s}_elbow"]]
        )
        forward_sign = 1.0 if reach >= 0 else -1.0
    forward = perp * forward_sign

    arms: list[ArmAngles | None] = []
    for side in ("left", "right"):
        shoulder, elbow, wrist = (_K[f"{side}_{j}"] for j in ("shoulder", "elbow", "wrist"))
        if not labelled[elbow]:
            arms.append(None)
            continue
        outward = _unit(perp * float(np.sign((xy[shoulder] - shoulders) @ perp) or 1.0))
        upper = xy[elbow] - xy[shoulder]
        in_plane = min(float(np.linalg.norm(upper)) / (UPPER_ARM_PER_TORSO * torso), 1.0)
        out_of_plane = math.sqrt(1.0 - in_plane**2)
        direction = _unit(upper)
        # 3D arm direction in the body frame (out, down, fwd), as a frontal and as a side view would show it
        seen_front = np.array([direction @ outward * in_plane, direction @ down * in_plane, out_of_plane])
        seen_side = np.array([out_of_plane, direction @ down * in_plane, direction @ forward * in_plane])
        out, dn, fwd = _unit(frontal * seen_front + (1.0 - frontal) * seen_side)
        if out == dn == fwd == 0.0:
            arms.append(None)
            continue
        bend = None
        if labelled[wrist]:
            forearm = xy[wrist] - xy[elbow]
            if np.linalg.norm(forearm) > 1e-6 and np.linalg.norm(upper) > 1e-6:
                across = np.array([-direction[1], direction[0]])
                bend = min(abs(_angle(_unit(forearm), direction, across)), MAX_ELBOW_FLEX)
        flex = math.degrees(math.asin(float(np.clip(fwd, -1.0, 1.0))))
        abd = math.degrees(math.atan2(out, dn))
        arms.append(ArmAngles(flex, abd, bend))

    # torso tilt against the picture's vertical (COCO photos are upright): shoulders shifted towards
    # the person's left bend the torso left (negative roll); towards the facing side, a forward lean
    torso_up = -down
    tilt = math.degrees(math.atan2(float(torso_up[0]), float(-torso_up[1])))
    left_outward = perp * float(np.sign((xy[_K["left_shoulder"]] - shoulders) @ perp) or 1.0)
    tilt_left = tilt * float(np.sign(left_outward[0]))
    tilt_forward = tilt * float(np.sign(forward[0]))
    return UpperBodyPrior(
        (arms[0], arms[1]),
        roll=float(np.clip(-tilt_left * frontal, -15.0, 15.0)),
        lean=float(np.clip(tilt_forward * (1.0 - frontal), -10.0, 30.0)),
    )


def _clip(value: float, low: float, high: float) -> float:
    return float(min(max(value, low), high))


class CocoSpPosePrior:
    """Samples the generator's poses per activity with arms and torso tilt of real COCO people."""

    def __init__(self, priors: list[UpperBodyPrior]):
        if not priors:
            raise ValueError("a pose prior needs at least one real upper body")
        self.priors = list(priors)

    @classmethod
    def from_keypoints(cls, poses: list[np.ndarray]) -> CocoSpPosePrior:
        lifted = (upper_body_from_keypoints(kp) for kp in poses)
        return cls([prior for prior in lifted if prior is not None])

    def sample_pose(self, rng: np.random.Generator, activity: str) -> Pose:
        base = sample_pose(rng, activity)  # legs, gait phase, lean, flight, head and seat
        prior = self.priors[int(rng.integers(len(self.priors)))]
        if rng.random() < 0.5:
            prior = prior.mirrored()
        return repose(base, prior, activity)

    __call__ = sample_pose


def repose(base: Pose, prior: UpperBodyPrior, activity: str) -> Pose:
    """``base`` (sampled for ``activity``) with the real pose's arms and torso tilt, as the docstring says."""
    gait = activity in ("walking", "running")
    # the gait's arm swing: the two arms' flexions move in opposition around a common offset
    swing = (base.shoulder_flex[0] - base.shoulder_flex[1]) / 2 if gait else 0.0
    flex, abd, elbow = list(base.shoulder_flex), list(base.shoulder_abd), list(base.elbow_flex)
    for i, arm in enumerate(prior.arms):
        if arm is None:
            continue
        side_swing = swing if i == 0 else -swing
        if activity == "running":
            flex[i] = 0.5 * arm.flex + side_swing
            abd[i] = min(arm.abd, RUNNING_MAX_ABDUCTION)
            elbow[i] = max(arm.elbow if arm.elbow is not None else 0.0, base.elbow_flex[i])
        else:
            flex[i] = arm.flex + side_swing
            abd[i] = arm.abd
            elbow[i] = arm.elbow if arm.elbow is not None else base.elbow_flex[i]
        flex[i], abd[i] = _clip(flex[i], -60.0, 180.0), _clip(abd[i], -30.0, 180.0)
    lean_range = (-5.0, 25.0) if gait else (-15.0, 35.0)
    return replace(
        base,
        lean=_clip(base.lean + prior.lean, *lean_range),
        roll=_clip(base.roll + prior.roll, -15.0, 15.0),
        shoulder_flex=(flex[0], flex[1]),
        shoulder_abd=(abd[0], abd[1]),
        elbow_flex=(elbow[0], elbow[1]),
    )


@functools.cache
def coco_sp_prior() -> CocoSpPosePrior:
    """The real-pose prior, built once per process (fetches the pocketpose wheel on first use)."""
    from model.data.coco_sp import load_coco_sp_poses

    return CocoSpPosePrior.from_keypoints(load_coco_sp_poses())


def pose_sampler(pose_prior: str | None) -> PoseSampler | None:
    """The sampler for a ``--pose-prior`` name; None means the generator's built-in poses."""
    if pose_prior is None:
        return None
    if pose_prior == "coco-sp":
        return coco_sp_prior()
    raise ValueError(f"unknown pose prior {pose_prior!r}; expected one of {POSE_PRIORS}")
