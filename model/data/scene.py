"""Scenes of several people: placement on a ground plane, rendering and per-person ground truth.

Shared by the still-image dataset (``synth``) and the moving sequences (``sequence``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import cv2
import numpy as np

from model.data.backgrounds import finish_image, light_direction, make_background
from model.data.poses import BodyShape, Pose, View, pose_body, sample_body_shape, sample_pose
from model.data.render import (
    MAX_PEOPLE,
    OCCLUDER_LABEL,
    Appearance,
    PartShape,
    draw_person,
    joint_visibility,
    project_person,
    sample_appearance,
    seat_parts,
)
from model.data.skeleton import DEFAULT_ACTIVITIES

MIN_VISIBLE_PIXELS = 24  # a person with fewer seen pixels gets no annotation (too small to label)


@dataclass
class PersonSpec:
    """Everything needed to draw one person once."""

    shape: BodyShape
    pose: Pose
    view: View
    appearance: Appearance
    activity: str
    seat_seed: int = 0  # seats are re-sampled from this so a sequence keeps the same chair
    track_id: int = 0
    seat_pose: Pose | None = None  # draw the seat of this pose (a chair stays while sitting down)


@dataclass
class PersonTruth:
    """Ground truth of one drawn person, in image pixels (COCO conventions)."""

    track_id: int
    activity: str
    keypoints: np.ndarray  # (17, 3) x, y, v with v in {0, 1, 2}; (0, 0, 0) where v = 0
    bbox: tuple[float, float, float, float]  # x, y, w, h around the seen pixels and seen joints
    area: float  # seen pixels
    segmentation: list[list[float]] = field(default_factory=list)  # polygons of the seen pixels

    @property
    def num_keypoints(self) -> int:
        return int((self.keypoints[:, 2] > 0).sum())


@dataclass
class Occluder:
    """A foreground object (pole, box, bush) drawn in front of everyone."""

    kind: str
    points: np.ndarray
    colour: tuple[int, int, int]


def sample_person(
    rng: np.random.Generator,
    activity: str,
    view: View,
    track_id: int = 0,
    pose_sampler: Callable[[np.random.Generator, str], Pose] | None = None,
) -> PersonSpec:
    """One person; ``pose_sampler`` (e.g. the real-pose prior) replaces the built-in ``sample_pose``."""
    return PersonSpec(
        shape=sample_body_shape(rng),
        pose=(pose_sampler or sample_pose)(rng, activity),
        view=view,
        appearance=sample_appearance(rng),
        activity=activity,
        seat_seed=int(rng.integers(2**31)),
        track_id=track_id,
    )


def sample_views(rng: np.random.Generator, count: int, width: int, height: int, horizon: float) -> list[View]:
    """Ground-plane placement: nearer people stand lower and look bigger; some are cut by the border."""
    elevation = float(rng.uniform(0, 20))
    size_gain = float(rng.uniform(0.7, 1.9))
    views = []
    for i in range(count):
        if rng.random() < 0.15:  # off the ground model: any size, anywhere
            ppu = height * float(rng.uniform(0.15, 0.9))
            gy = float(rng.uniform(0.2, 1.25)) * height
        else:
            gy = float(rng.uniform(horizon + 0.06, 1.15)) * height
            ppu = float(np.clip(size_gain * (gy - horizon * height), 0.12 * height, 1.3 * height))
        if i > 0 and rng.random() < 0.4:  # stand near someone already placed: overlaps
            other = views[int(rng.integers(len(views)))]
            gx = other.ground_x + float(rng.normal(0, 0.25)) * other.pixels_per_unit
        else:
            gx = float(rng.uniform(-0.12, 1.12)) * width
        views.append(View(float(rng.uniform(0, 360)), elevation, ppu, gx, gy))
    return views


def sample_occluders(rng: np.random.Generator, width: int, height: int) -> list[Occluder]:
    occluders = []
    for _ in range(int(rng.integers(0, 3)) if rng.random() < 0.3 else 0):
        colour = tuple(int(c) for c in rng.integers(20, 230, 3))
        x = float(rng.uniform(0, width))
        if rng.random() < 0.5:  # a pole
            half = float(rng.uniform(0.01, 0.04)) * width
            pts = np.array([[x - half, -1], [x + half, -1], [x + half, height + 1], [x - half, height + 1]])
            occluders.append(Occluder("pole", pts, colour))
        else:  # a low box / bush along the bottom edge
            w, top = float(rng.uniform(0.1, 0.35)) * width, float(rng.uniform(0.7, 0.95)) * height
            pts = np.array([[x, top], [x + w, top], [x + w, height + 1], [x, height + 1]])
            occluders.append(Occluder("box", pts, colour))
    return occluders


def sample_scene(
    rng: np.random.Generator,
    width: int,
    height: int,
    max_people: int = 8,
    pose_sampler: Callable[[np.random.Generator, str], Pose] | None = None,
) -> tuple[dict, list]:
    """A random still scene: background settings and 1..max_people people doing random activities."""
    horizon = float(rng.uniform(0.15, 0.6))
    count = int(rng.integers(1, max_people + 1))
    views = sample_views(rng, count, width, height, horizon)
    people = [
        sample_person(
            rng,
            DEFAULT_ACTIVITIES[int(rng.integers(len(DEFAULT_ACTIVITIES)))],
            view,
            track_id=i,
            pose_sampler=pose_sampler,
        )
        for i, view in enumerate(views)
    ]
    return {"horizon": horizon, "occluders": sample_occluders(rng, width, height)}, people


def _seen_region(labels: np.ndarray, label_base: int, keypoints: np.ndarray) -> tuple[tuple, float, list]:
    """bbox (x, y, w, h), area and polygons of the pixels this person shows, joined with seen joints."""
    ids = labels >> 4
    mask = (ids == (label_base >> 4)).astype(np.uint8)
    area = float(cv2.countNonZero(mask))
    if area == 0:
        return (0.0, 0.0, 0.0, 0.0), 0.0, []
    x, y, w, h = cv2.boundingRect(mask)
    x0, y0, x1, y1 = float(x), float(y), float(x + w), float(y + h)
    seen = keypoints[keypoints[:, 2] == 2]
    if len(seen):
        x0, y0 = min(x0, float(seen[:, 0].min())), min(y0, float(seen[:, 1].min()))
        x1, y1 = max(x1, float(seen[:, 0].max())), max(y1, float(seen[:, 1].max()))
    contours, _ = cv2.findContours(mask[y : y + h, x : x + w], cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    polygons = []
    for contour in contours:
        if len(contour) < 3:
            continue
        approx = cv2.approxPolyDP(contour, 0.8, True).reshape(-1, 2) + (x, y)
        if len(approx) >= 3:
            polygons.append([round(float(v), 1) for v in approx.reshape(-1)])
    return (x0, y0, x1 - x0, y1 - y0), area, polygons


def render_scene(
    rng: np.random.Generator,
    width: int,
    height: int,
    settings: dict,
    people: list[PersonSpec],
    background: np.ndarray | None = None,
    finish_seed: int | None = None,
) -> tuple[np.ndarray, list[PersonTruth]]:
    """Draw the people (far to near) over a background; return the BGR image and their ground truth."""
    if len(people) > MAX_PEOPLE:
        raise ValueError(f"at most {MAX_PEOPLE} people per image, got {len(people)}")
    img = (
        make_background(rng, width, height, settings["horizon"]) if background is None else background.copy()
    )
    labels = np.zeros((height, width), np.uint8)
    light = light_direction(rng)
    order = sorted(
        range(len(people)), key=lambda i: (people[i].view.ground_y, people[i].view.pixels_per_unit)
    )
    projected = {}
    for slot, i in enumerate(order):
        spec = people[i]
        body = pose_body(spec.shape, spec.pose)
        person = project_person(spec.shape, body, spec.view, spec.appearance)
        seat_body = body if spec.seat_pose is None else pose_body(spec.shape, spec.seat_pose)
        seat: list[PartShape] = seat_parts(
            spec.shape, seat_body, spec.view, np.random.default_rng(spec.seat_seed)
        )
        label_base = (slot + 1) * 16
        draw_person(img, labels, person, spec.appearance, label_base, light, seat)
        projected[i] = (person, label_base)
    for occ in settings.get("occluders", []):
        pts = np.round(occ.points).astype(np.int32)
        cv2.fillPoly(img, [pts], occ.colour, cv2.LINE_AA)
        cv2.fillPoly(labels, [pts], OCCLUDER_LABEL, cv2.LINE_8)
    truths = []
    for i, spec in enumerate(people):
        person, label_base = projected[i]
        flags = joint_visibility(labels, person, label_base)
        kps = np.zeros((17, 3))
        kps[:, :2] = np.where(flags[:, None] > 0, person.keypoints, 0.0)
        kps[:, 2] = flags
        bbox, area, polygons = _seen_region(labels, label_base, kps)
        truths.append(PersonTruth(spec.track_id, spec.activity, kps, bbox, area, polygons))
    finish_rng = rng if finish_seed is None else np.random.default_rng(finish_seed)
    return finish_image(img, finish_rng), truths


def annotation_is_usable(truth: PersonTruth) -> bool:
    """COCO annotates people it can see, even with no joint inside the image (num_keypoints 0)."""
    return truth.area >= MIN_VISIBLE_PIXELS
