"""Identity scores of a tracker against ground-truth identities: switches, IDF1, right-identity share.

A switch is a ground-truth person matched to another track than the one it last had (CLEAR-MOT's IDSW,
fragmentation included). IDF1 = 2·IDTP / (2·IDTP + IDFP + IDFN): IDTP are the person-frames of the best
one-to-one pairing of ground-truth identities and track ids over the whole sequence
(``linear_sum_assignment`` on their co-occurrence counts), IDFN the other ground-truth person-frames,
IDFP the other track person-frames.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import asdict, dataclass, fields
from typing import Any

import numpy as np
from scipy.optimize import linear_sum_assignment

TARGET_SWITCHES_PER_100 = 1.0  # with ground-truth detections (issue 19)
TARGET_RIGHT_SHARE = 0.95


@dataclass(frozen=True)
class FrameIdentities:
    """One frame: the ground-truth ids present, the track ids reported and which went with which."""

    gt_ids: tuple[int, ...]
    track_ids: tuple[int, ...]
    pairs: tuple[tuple[int, int], ...]  # (ground-truth id, track id) matched in this frame
    crossing: bool = False


@dataclass(frozen=True)
class IdentityScores:
    frames: int = 0
    crossing_frames: int = 0
    gt_person_frames: int = 0
    track_person_frames: int = 0
    matched_person_frames: int = 0
    idtp: int = 0
    switches: int = 0
    gt_identities: int = 0
    track_identities: int = 0

    def __add__(self, other: IdentityScores) -> IdentityScores:
        return IdentityScores(*(getattr(self, f.name) + getattr(other, f.name) for f in fields(self)))

    @property
    def switches_per_100_frames(self) -> float:
        return 100.0 * self.switches / self.frames if self.frames else 0.0

    @property
    def idf1(self) -> float:
        denominator = self.gt_person_frames + self.track_person_frames  # = 2·IDTP + IDFP + IDFN
        return 2.0 * self.idtp / denominator if denominator else 1.0

    @property
    def right_identity_share(self) -> float:
        return self.idtp / self.gt_person_frames if self.gt_person_frames else 1.0

    @property
    def right_identity_share_matched(self) -> float:
        return self.idtp / self.matched_person_frames if self.matched_person_frames else 1.0

    @property
    def detection_recall(self) -> float:
        return self.matched_person_frames / self.gt_person_frames if self.gt_person_frames else 1.0

    def meets_ground_truth_targets(self) -> bool:
        return (
            self.switches_per_100_frames <= TARGET_SWITCHES_PER_100
            and self.right_identity_share >= TARGET_RIGHT_SHARE
        )

    def as_dict(self) -> dict[str, Any]:
        return {
            **asdict(self),
            "switches_per_100_frames": self.switches_per_100_frames,
            "idf1": self.idf1,
            "right_identity_share": self.right_identity_share,
            "right_identity_share_matched": self.right_identity_share_matched,
            "detection_recall": self.detection_recall,
        }


def score_identities(frames: Iterable[FrameIdentities]) -> IdentityScores:
    """Switches, IDTP and the counts behind IDF1 for one sequence (ids are per sequence)."""
    frames = list(frames)
    gt_ids = sorted({gt for frame in frames for gt in frame.gt_ids})
    track_ids = sorted({track for frame in frames for track in frame.track_ids})
    gt_index = {gt: i for i, gt in enumerate(gt_ids)}
    track_index = {track: i for i, track in enumerate(track_ids)}
    together = np.zeros((len(gt_ids), len(track_ids)), np.int64)
    last_track: dict[int, int] = {}
    switches = 0
    for frame in frames:
        for gt, track in frame.pairs:
            together[gt_index[gt], track_index[track]] += 1
            if gt in last_track and last_track[gt] != track:
                switches += 1
            last_track[gt] = track
    rows, cols = linear_sum_assignment(together, maximize=True) if together.size else ([], [])
    return IdentityScores(
        frames=len(frames),
        crossing_frames=sum(frame.crossing for frame in frames),
        gt_person_frames=sum(len(frame.gt_ids) for frame in frames),
        track_person_frames=sum(len(frame.track_ids) for frame in frames),
        matched_person_frames=int(together.sum()),
        idtp=int(together[rows, cols].sum()),
        switches=switches,
        gt_identities=len(gt_ids),
        track_identities=len(track_ids),
    )
