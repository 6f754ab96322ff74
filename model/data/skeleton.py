"""The COCO person skeleton as the generator uses it, plus the body parts it draws.

Keypoint names, 0-based skeleton pairs, flip pairs and activities are owned by
``model.predictions`` (COCO's ``person_keypoints`` category); this module adds the
generator's own body parts and which parts show which joint.
"""

from __future__ import annotations

from model.predictions import COCO_KEYPOINT_NAMES, COCO_SKELETON, DEFAULT_ACTIVITIES, FLIP_PAIRS

__all__ = [
    "ACTIVITY_INDEX",
    "COCO_KEYPOINT_NAMES",
    "COCO_SKELETON",
    "DEFAULT_ACTIVITIES",
    "FLIP_PAIRS",
    "JOINT_PARTS",
    "KEYPOINT_INDEX",
    "NUM_KEYPOINTS",
    "PART_INDEX",
    "PART_NAMES",
]

NUM_KEYPOINTS = len(COCO_KEYPOINT_NAMES)
KEYPOINT_INDEX: dict[str, int] = {name: i for i, name in enumerate(COCO_KEYPOINT_NAMES)}
ACTIVITY_INDEX: dict[str, int] = {name: i for i, name in enumerate(DEFAULT_ACTIVITIES)}

# Drawn body parts. A part's id (its index here) goes into the renderer's label map, so the
# visibility of a joint can be decided from which part covers its pixel.
PART_NAMES: tuple[str, ...] = (
    "torso",
    "head",
    "neck",
    "left_upper_arm",
    "right_upper_arm",
    "left_forearm",
    "right_forearm",
    "left_hand",
    "right_hand",
    "left_thigh",
    "right_thigh",
    "left_shin",
    "right_shin",
    "left_foot",
    "right_foot",
)
PART_INDEX: dict[str, int] = {name: i for i, name in enumerate(PART_NAMES)}

# Which parts a joint belongs to: a joint is visible when one of them covers its pixel.
JOINT_PARTS: dict[str, tuple[str, ...]] = {
    "nose": ("head",),
    "left_eye": ("head",),
    "right_eye": ("head",),
    "left_ear": ("head",),
    "right_ear": ("head",),
    "left_shoulder": ("left_upper_arm", "torso"),
    "right_shoulder": ("right_upper_arm", "torso"),
    "left_elbow": ("left_upper_arm", "left_forearm"),
    "right_elbow": ("right_upper_arm", "right_forearm"),
    "left_wrist": ("left_forearm", "left_hand"),
    "right_wrist": ("right_forearm", "right_hand"),
    "left_hip": ("left_thigh", "torso"),
    "right_hip": ("right_thigh", "torso"),
    "left_knee": ("left_thigh", "left_shin"),
    "right_knee": ("right_thigh", "right_shin"),
    "left_ankle": ("left_shin", "left_foot"),
    "right_ankle": ("right_shin", "right_foot"),
}
