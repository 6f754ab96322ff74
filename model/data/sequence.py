"""The same people moving over frames: walking and running across the scene, stopping, sitting
down, standing up and crossing in front of one another, with identities and activity per frame.

``iter_sequence_frames`` yields frames in memory (the streaming demo feeds them to Redis);
``generate_sequence`` writes them to disk::

    DIR/images/sequence/000000000001.jpg     frames (COCO layout: ``data show --split sequence`` works)
    DIR/annotations/person_keypoints_sequence.json   COCO keypoints + track_id/frame_index
    DIR/ground_truth.json                    per frame: people with track_id, activity, keypoints, bbox
    DIR/sequence.mp4                         the frames as an MP4 (mp4v)
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm

from model.data.backgrounds import make_background
from model.data.poses import Pose, View, gait_pose, lerp_pose, sample_body_shape, sitting_pose, standing_pose
from model.data.render import MAX_PEOPLE, sample_appearance
from model.data.scene import PersonSpec, PersonTruth, annotation_is_usable, render_scene
from model.data.synth import encode_image, person_category, truth_to_annotation

# body heights per second (a walker does ~0.8, a runner ~2)
SPEED = {"walking": 0.8, "running": 2.0, "standing": 0.0, "sitting": 0.0}
GAIT_CYCLE = {"walking": 0.85, "running": 1.5}  # body heights travelled per full gait cycle
NEXT_ACTIVITY = {
    "walking": (("standing", 0.3), ("running", 0.2), ("sitting", 0.2), ("walking", 0.3)),
    "running": (("walking", 0.7), ("standing", 0.3)),
    "standing": (("walking", 0.6), ("sitting", 0.25), ("running", 0.15)),
    "sitting": (("standing", 1.0),),
}
BLEND_SECONDS = 0.6


@dataclass
class _Actor:
    track_id: int
    rng: np.random.Generator
    x: float
    ground_y: float
    yaw: float
    activity: str
    frames_left: int
    style_seed: int
    phase: float = 0.0
    blend_from: Pose | None = None
    blend_from_activity: str = ""
    blend_from_yaw: float = 0.0
    blend_step: int = 0
    seat_pose: Pose | None = None
    spec_seed: int = 0
    shape: object = None
    appearance: object = None


@dataclass
class SequenceInfo:
    out_dir: Path
    frames: int
    people: int
    width: int
    height: int
    fps: float
    video: Path | None
    activities: dict[str, int] = field(default_factory=dict)


def _moving_yaw(direction: int, rng: np.random.Generator) -> float:
    """Facing the walking direction (+1 right, -1 left), turned up to 40 degrees toward/away from camera."""
    return (90.0 if direction > 0 else 270.0) + float(rng.uniform(-40, 40))


def _angle_lerp(a: float, b: float, t: float) -> float:
    delta = (b - a + 180.0) % 360.0 - 180.0
    return (a + delta * t) % 360.0


class _Scene:
    """Deterministic simulation of ``people`` actors on one ground plane; ``crossing`` puts them all
    near one ground line, walking or running back and forth inside the frame, so they pass in front of
    one another again and again and never leave the view."""

    def __init__(
        self, people: int, seed: int, width: int, height: int, fps: float, crossing: bool = False
    ) -> None:
        self.rng = np.random.default_rng(np.random.SeedSequence([seed, 0x5E0]))
        self.width, self.height, self.fps = width, height, fps
        self.horizon = float(self.rng.uniform(0.2, 0.45))
        self.size_gain = float(self.rng.uniform(0.8, 1.3))
        self.elevation = float(self.rng.uniform(0, 15))
        self.blend_frames = max(2, round(BLEND_SECONDS * fps))
        self.crossing = crossing
        # turn back this far inside the frame (a share of its width); negative: once out of view.
        # Crossing actors stay in view: a tracker cannot know a person who left and came back.
        self.turn_margin = 0.15 if crossing else -0.08
        self.actors: list[_Actor] = []
        crossing_line = float(self.rng.uniform(self.horizon + 0.3, 0.85)) if crossing else 0.0
        for i in range(people):
            rng = np.random.default_rng(np.random.SeedSequence([seed, 0xAC7, i]))
            activity = ("walking", "running", "standing", "sitting", "walking")[i % 5] if i < 5 else "walking"
            direction = 1 if i % 2 == 0 else -1
            start = float(rng.uniform(0.05, 0.45))
            actor = _Actor(
                track_id=i + 1,
                rng=rng,
                x=(start if direction > 0 else 1.0 - start) * width,
                ground_y=float(rng.uniform(self.horizon + 0.2, 1.0)) * height,
                yaw=_moving_yaw(direction, rng),
                activity=activity,
                frames_left=int(rng.integers(1, 4) * fps),
                style_seed=int(rng.integers(2**31)),
                phase=float(rng.uniform(0, 2 * math.pi)),
                spec_seed=int(rng.integers(2**31)),
            )
            actor.shape, actor.appearance = sample_body_shape(rng), sample_appearance(rng)
            if crossing:
                actor.activity = activity = ("walking", "running")[i % 2]
                actor.ground_y = (crossing_line + float(rng.uniform(-0.04, 0.04))) * height
            if activity == "sitting":
                actor.seat_pose = self._target_pose(actor, "sitting")
            self.actors.append(actor)

    def _ppu(self, ground_y: float) -> float:
        raw = self.size_gain * (ground_y - self.horizon * self.height)
        return float(np.clip(raw, 0.15 * self.height, 0.9 * self.height))

    def _target_pose(self, actor: _Actor, activity: str) -> Pose:
        style = np.random.default_rng(actor.style_seed)  # same style (stride, arm pose) every frame
        if activity in GAIT_CYCLE:
            return gait_pose(style, actor.phase, running=activity == "running")
        if activity == "sitting":
            return sitting_pose(style, on_ground=False)
        return standing_pose(style)

    def _next_segment(self, actor: _Actor, current: Pose) -> None:
        options, weights = zip(*NEXT_ACTIVITY[actor.activity], strict=True)
        nxt = str(actor.rng.choice(options, p=np.array(weights) / sum(weights)))
        actor.blend_from, actor.blend_from_activity, actor.blend_from_yaw = current, actor.activity, actor.yaw
        actor.blend_step = 0
        if nxt == "walking" and actor.activity == "walking":  # turn around
            direction = -1 if math.sin(math.radians(actor.yaw)) > 0 else 1
            actor.yaw = _moving_yaw(direction, actor.rng)
        elif nxt in ("walking", "running") and actor.activity in ("standing", "sitting"):
            actor.yaw = _moving_yaw(int(actor.rng.choice([-1, 1])), actor.rng)
        elif nxt in ("standing", "sitting"):
            actor.yaw = (actor.yaw + float(actor.rng.uniform(-50, 50))) % 360.0
        actor.activity = nxt
        actor.style_seed = int(actor.rng.integers(2**31))
        seconds = {"walking": (2, 5), "running": (1, 3), "standing": (1, 3), "sitting": (2, 5)}[nxt]
        actor.frames_left = int(actor.rng.uniform(*seconds) * self.fps)
        if nxt == "sitting":
            actor.seat_pose = self._target_pose(actor, "sitting")
        elif actor.blend_from_activity != "sitting":
            actor.seat_pose = None  # the chair stays while standing up, then is forgotten

    def _pose_now(self, actor: _Actor) -> tuple[Pose, str, float]:
        target = self._target_pose(actor, actor.activity)
        if actor.blend_from is None or actor.blend_step >= self.blend_frames:
            return target, actor.activity, actor.yaw
        t = (actor.blend_step + 1) / self.blend_frames
        smooth = t * t * (3 - 2 * t)
        pose = lerp_pose(actor.blend_from, target, smooth)
        label = actor.activity if t >= 0.5 else actor.blend_from_activity
        return pose, label, _angle_lerp(actor.blend_from_yaw, actor.yaw, smooth)

    def step(self) -> list[PersonSpec]:
        """Advance every actor by one frame; return what to draw."""
        specs = []
        for actor in self.actors:
            pose, label, yaw = self._pose_now(actor)
            ppu = self._ppu(actor.ground_y)
            blending = actor.blend_from is not None and actor.blend_step < self.blend_frames
            seated_now = actor.activity == "sitting" or (blending and actor.blend_from_activity == "sitting")
            specs.append(
                PersonSpec(
                    shape=actor.shape,
                    pose=pose,
                    view=View(yaw, self.elevation, ppu, actor.x, actor.ground_y),
                    appearance=actor.appearance,
                    activity=label,
                    seat_seed=actor.spec_seed,
                    track_id=actor.track_id,
                    seat_pose=actor.seat_pose if seated_now else None,
                )
            )
            # move: speed eases in/out with the pose blend
            blend_t = (
                1.0 if actor.blend_from is None else min(1.0, (actor.blend_step + 1) / self.blend_frames)
            )
            old_speed = SPEED.get(actor.blend_from_activity, 0.0) if actor.blend_from is not None else 0.0
            speed = (old_speed + (SPEED[actor.activity] - old_speed) * blend_t) / self.fps  # heights / frame
            stature_px = ppu * actor.shape.stature
            actor.x += math.sin(math.radians(yaw)) * speed * stature_px
            if self.crossing:  # a wall: turning waits for a pose blend to end, walking on must not
                actor.x = float(np.clip(actor.x, 0.08 * self.width, 0.92 * self.width))
            actor.ground_y += math.cos(math.radians(yaw)) * speed * stature_px * 0.25
            actor.ground_y = float(
                np.clip(actor.ground_y, (self.horizon + 0.12) * self.height, 1.05 * self.height)
            )
            cycle = GAIT_CYCLE.get(actor.activity, 1.0)
            actor.phase = (actor.phase + 2 * math.pi * speed / cycle) % (2 * math.pi)
            actor.blend_step += 1
            actor.frames_left -= 1
            margin = self.turn_margin * self.width
            leaving = (actor.x < margin and math.sin(math.radians(yaw)) < 0) or (
                actor.x > self.width - margin and math.sin(math.radians(yaw)) > 0
            )
            if actor.frames_left <= 0 or (leaving and actor.blend_step >= self.blend_frames):
                if leaving and actor.activity in GAIT_CYCLE:
                    actor.activity = "walking"  # walking again, turned around
                self._next_segment(actor, pose)
                if self.crossing and leaving and actor.activity in GAIT_CYCLE:
                    actor.yaw = _moving_yaw(1 if actor.x < self.width / 2 else -1, actor.rng)  # back inside
        return specs


def _iter_rendered(
    frames: int, people: int, seed: int, size: tuple[int, int], fps: float, crossing: bool = False
) -> Iterator[tuple[np.ndarray, int, list[PersonTruth], dict[int, float]]]:
    if frames < 1:
        raise ValueError(f"frames must be positive, got {frames}")
    if not 1 <= people <= MAX_PEOPLE:
        raise ValueError(f"people must be in 1..{MAX_PEOPLE}, got {people}")
    width, height = size
    scene = _Scene(people, seed, width, height, fps, crossing)
    background = make_background(np.random.default_rng([seed, 0xB6]), width, height, scene.horizon)
    for index in range(frames):
        specs = scene.step()
        frame, truths = render_scene(
            np.random.default_rng([seed, 0x119]),  # the same light every frame
            width,
            height,
            {"horizon": scene.horizon, "occluders": []},
            specs,
            background=background,
            finish_seed=int(np.random.SeedSequence([seed, 0xF1, index]).generate_state(1)[0]),
        )
        scale = {s.track_id: s.view.pixels_per_unit * s.shape.stature for s in specs}
        yield frame, index, [t for t in truths if annotation_is_usable(t)], scale


def _truth_record(truth: PersonTruth, scale: float) -> dict:
    return {
        "track_id": truth.track_id,
        "activity": truth.activity,
        "keypoints": [[round(float(v), 2) for v in row[:2]] + [int(row[2])] for row in truth.keypoints],
        "bbox": [round(float(v), 2) for v in truth.bbox],
        "area": round(truth.area, 2),
        "scale": round(scale, 2),
    }


def iter_sequence_frames(
    frames: int,
    people: int,
    seed: int,
    size: tuple[int, int] = (480, 480),
    fps: float = 25.0,
    crossing: bool = False,
) -> Iterator[tuple[np.ndarray, dict]]:
    """Yield (BGR frame (H, W, 3) uint8, ground truth) without touching disk; ``crossing``: everyone
    walks or runs back and forth along one ground line, inside the frame, so they cross in front of one
    another (tracking evaluation).

    Ground truth: ``{"frame_index", "people": [{"track_id", "activity", "keypoints": 17 x [x, y, v],
    "bbox": [x, y, w, h], "area", "scale": pixels per body height}]}``.
    """
    for frame, index, truths, scale in _iter_rendered(frames, people, seed, size, fps, crossing):
        yield frame, {"frame_index": index, "people": [_truth_record(t, scale[t.track_id]) for t in truths]}


def generate_sequence(
    out_dir: str | Path,
    frames: int,
    people: int,
    seed: int,
    size: tuple[int, int] = (480, 480),
    fps: float = 25.0,
    video: bool = True,
    progress: bool = True,
) -> SequenceInfo:
    """Write frames, COCO annotations with track ids, a per-frame ground-truth JSON and an MP4."""
    out = Path(out_dir)
    (out / "images" / "sequence").mkdir(parents=True, exist_ok=True)
    (out / "annotations").mkdir(parents=True, exist_ok=True)
    width, height = size
    writer = None
    video_path = out / "sequence.mp4" if video else None
    if video_path is not None:
        writer = cv2.VideoWriter(str(video_path), cv2.VideoWriter_fourcc(*"mp4v"), fps, (width, height))
        if not writer.isOpened():
            raise RuntimeError(f"OpenCV could not open an mp4v writer for {video_path}")
    coco_images, coco_anns, gt_frames, activities = [], [], [], {}
    try:
        rendered = _iter_rendered(frames, people, seed, size, fps)
        for frame, index, truths, scale in tqdm(
            rendered, total=frames, desc="sequence", unit="frame", disable=not progress
        ):
            image_id = index + 1
            file_name = f"{image_id:012d}.jpg"
            (out / "images" / "sequence" / file_name).write_bytes(encode_image(frame, "jpg"))
            if writer is not None:
                writer.write(frame)
            coco_images.append(
                {
                    "id": image_id,
                    "file_name": file_name,
                    "width": width,
                    "height": height,
                    "frame_index": index,
                }
            )
            for truth in truths:
                ann = truth_to_annotation(truth, len(coco_anns) + 1, image_id)
                ann["track_id"] = truth.track_id
                coco_anns.append(ann)
                activities[truth.activity] = activities.get(truth.activity, 0) + 1
            gt_frames.append(
                {
                    "frame_index": index,
                    "file_name": f"images/sequence/{file_name}",
                    "people": [_truth_record(t, scale[t.track_id]) for t in truths],
                }
            )
    finally:
        if writer is not None:
            writer.release()
    info = {
        "description": "posestream synthetic sequence",
        "seed": seed,
        "frames": frames,
        "people": people,
        "width": width,
        "height": height,
        "fps": fps,
    }
    coco = {
        "info": info,
        "licenses": [],
        "images": coco_images,
        "annotations": coco_anns,
        "categories": [person_category()],
    }
    (out / "annotations" / "person_keypoints_sequence.json").write_text(
        json.dumps(coco, separators=(",", ":"))
    )
    (out / "ground_truth.json").write_text(
        json.dumps({"info": info, "frames": gt_frames}, separators=(",", ":"))
    )
    return SequenceInfo(out, frames, people, width, height, fps, video_path, activities)
