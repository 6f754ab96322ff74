"""StalePolicy: which frames are dropped unprocessed (a FrameResult with status "stale", counted).

A frame's own ``max_age_s`` (its producer's bound; rule ``max_age``) is always applied. Two operator rules
from the settings add to it, per camera, each off when its bound is 0 (and ``overtaken``, always on,
applied by the shard consumer to reclaimed frames that a newer published frame of their camera has
overtaken):
- age: the frame waited in Redis longer than ``max_age_s``. Age is measured on the Redis clock (the
  entry's XADD id time against TIME), so producer and worker clocks need not agree.
- behind: the shard's backlog is over ``backlog`` and a newer frame of the same camera has already
  been read; under overload a camera's latest frame matters more than its history.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from enum import StrEnum


class StaleRule(StrEnum):
    AGE = "age"
    # Older than the frame's own ``max_age_s`` (set by its producer, e.g. a live camera).
    MAX_AGE = "max_age"
    BEHIND = "behind"
    # A redelivered frame older than one its camera already had published (stranded in the PEL, then
    # reclaimed): publishing it would break the camera's frame order.
    OVERTAKEN = "overtaken"


@dataclass
class StaleCandidate:
    entry_id: str
    camera_id: str
    frame_id: int
    xadd_ms: int
    max_age_s: float | None = None  # the frame's own bound, when its producer gave one


@dataclass
class StalePolicy:
    max_age_s: float = 0.0
    backlog: int = 0
    counts: Counter[str] = field(default_factory=Counter)
    _newest: dict[str, int] = field(default_factory=dict)  # camera_id → newest frame_id read

    @property
    def needs_clock(self) -> bool:
        return self.max_age_s > 0

    @property
    def needs_backlog(self) -> bool:
        return self.backlog > 0

    def classify(
        self, frames: list[StaleCandidate], *, now_ms: float | None, backlog: int | None
    ) -> dict[str, StaleRule]:
        """The stale frames of one read batch: entry id → the rule that dropped it (others absent)."""
        for f in frames:
            if f.frame_id > self._newest.get(f.camera_id, -1):
                self._newest[f.camera_id] = f.frame_id
        overloaded = self.needs_backlog and backlog is not None and backlog > self.backlog
        stale: dict[str, StaleRule] = {}
        for f in frames:
            age_ms = now_ms - f.xadd_ms if now_ms is not None else None
            if age_ms is not None and f.max_age_s is not None and age_ms > f.max_age_s * 1000:
                stale[f.entry_id] = StaleRule.MAX_AGE
            elif self.needs_clock and age_ms is not None and age_ms > self.max_age_s * 1000:
                stale[f.entry_id] = StaleRule.AGE
            elif overloaded and f.frame_id < self._newest[f.camera_id]:
                stale[f.entry_id] = StaleRule.BEHIND
        self.counts.update(stale.values())
        return stale
