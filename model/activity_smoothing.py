"""Per-track temporal smoothing of the activity label (numpy-free, plain Python values).

A new track's smoothed label is its first raw label (ema: the arg-max of its first scores). After
that the label changes only for a clear winner, so it does not flicker where the old and the new
activity cross under per-frame noise (a plain plurality or arg-max now and then does):

* ``vote``: over the last ``window`` raw labels of the track, another label must hold a strict majority
  (more than half the window) to replace the current one.
* ``ema``: an exponential average of ``activity_scores`` (a one-hot of the raw label when a person has
  no scores), ``ema = alpha * scores + (1 - alpha) * ema``; its arg-max must lead the current label's
  average by at least ``margin`` (ties: the first name in sorted order).

Both are deterministic functions of the track's frames.

The state of one track is a ``SmoothedActivity`` value; ``ActivitySmoother.step`` returns a new one.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

SmoothingMethod = Literal["vote", "ema"]


@dataclass(frozen=True)
class SmoothedActivity:
    """One track's smoothing state: the smoothed label, its scores and what produced them."""

    label: str = ""
    scores: tuple[tuple[str, float], ...] = ()  # (name, score) sorted by name
    recent: tuple[str, ...] = ()  # vote: the last ``window`` raw labels, oldest first
    ema: tuple[tuple[str, float], ...] = ()  # ema: the running average, sorted by name

    def scores_dict(self) -> dict[str, float]:
        return dict(self.scores)

    def to_plain(self) -> dict[str, object]:
        return {
            "label": self.label,
            "scores": [[name, value] for name, value in self.scores],
            "recent": list(self.recent),
            "ema": [[name, value] for name, value in self.ema],
        }

    @classmethod
    def from_plain(cls, plain: Mapping[str, object]) -> SmoothedActivity:
        return cls(
            label=str(plain["label"]),
            scores=tuple((str(name), float(value)) for name, value in plain["scores"]),  # type: ignore[union-attr]
            recent=tuple(str(label) for label in plain["recent"]),  # type: ignore[union-attr]
            ema=tuple((str(name), float(value)) for name, value in plain["ema"]),  # type: ignore[union-attr]
        )


@dataclass(frozen=True)
class ActivitySmoother:
    method: SmoothingMethod = "vote"
    window: int = 9
    alpha: float = 0.15
    margin: float = 0.1

    def __post_init__(self) -> None:
        if self.method not in ("vote", "ema"):
            raise ValueError(f"smoothing method must be 'vote' or 'ema', got {self.method!r}")
        if self.window < 1:
            raise ValueError(f"smoothing window must be at least 1, got {self.window}")
        if not 0.0 < self.alpha <= 1.0:
            raise ValueError(f"ema alpha must be in (0, 1], got {self.alpha}")
        if not 0.0 <= self.margin < 1.0:
            raise ValueError(f"ema margin must be in [0, 1), got {self.margin}")

    def step(
        self, state: SmoothedActivity, activity: str, activity_scores: Mapping[str, float]
    ) -> SmoothedActivity:
        """The state after one more frame of this track with raw ``activity`` / ``activity_scores``."""
        if self.method == "vote":
            return self._vote(state, activity)
        return self._ema(state, activity, activity_scores)

    def _vote(self, state: SmoothedActivity, activity: str) -> SmoothedActivity:
        recent = (*state.recent, activity)[-self.window :]
        counts: dict[str, int] = {}
        for label in recent:
            counts[label] = counts.get(label, 0) + 1
        majority = [name for name, count in counts.items() if 2 * count > len(recent)]  # at most one
        label = majority[0] if majority and state.label else state.label or activity
        scores = tuple((name, counts[name] / len(recent)) for name in sorted(counts))
        return SmoothedActivity(label=label, scores=scores, recent=recent)

    def _ema(
        self, state: SmoothedActivity, activity: str, activity_scores: Mapping[str, float]
    ) -> SmoothedActivity:
        observed = dict(activity_scores) if activity_scores else {activity: 1.0}
        previous = dict(state.ema)
        if previous:
            names = sorted(set(previous) | set(observed))
            average = {
                name: self.alpha * float(observed.get(name, 0.0))
                + (1.0 - self.alpha) * previous.get(name, 0.0)
                for name in names
            }
        else:  # the first frame of a track starts the average at its scores
            names = sorted(observed)
            average = {name: float(observed[name]) for name in names}
        leader = max(names, key=lambda name: (average[name], -names.index(name)))
        label = state.label or leader
        if leader != label and average[leader] - average.get(label, 0.0) >= self.margin:
            label = leader
        ema = tuple((name, average[name]) for name in names)
        return SmoothedActivity(label=label, scores=ema, ema=ema)
