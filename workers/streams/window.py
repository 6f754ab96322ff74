"""How many frames a shard's owner keeps in flight: enough to fill the backbone's next batch, no more.

Frames in flight are taken from the stream but not yet published. Batching needs some of them (a batch
can only fill from frames already taken), but every frame beyond what the backbone can take next only
waits in the consumer, and under overload that wait is latency: a fixed window of 24 on a machine that
computes one batch of 8 at a time queued two batches behind every frame. The rule (README, "Latency under
overload"): the backbone's ``max_batch_size`` times its replicas (one batch queued for each), plus the
batch being computed, ``max_batch_size x (replicas + 1)``. Frames beyond it stay in Redis, where the
producer sees the backlog and a live frame's ``max_age_s`` can still turn it stale, unrun.

``settings.in_flight`` pins the window instead. A pipeline that reports no backbone (the in-process
``LocalPipeline``) is one replica whose batch is one pipeline call of ``call_batch`` frames.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal, Protocol, runtime_checkable

from schemas.settings import Settings

WindowSource = Literal["settings", "backbone", "call_batch"]


@dataclass(frozen=True)
class BackboneCapacity:
    """What the backbone can take at once: its deployment's batch size and how many replicas run it."""

    max_batch_size: int
    replicas: int

    def __post_init__(self) -> None:
        if self.max_batch_size < 1 or self.replicas < 1:
            raise ValueError(f"max_batch_size and replicas must be >= 1, got {self}")

    @property
    def window(self) -> int:
        # one batch queued for every replica, plus the batch being computed
        return self.max_batch_size * (self.replicas + 1)


@runtime_checkable
class ReportsBackbone(Protocol):
    """A pipeline that knows its backbone's batching (the Serve pipeline); None while it does not yet."""

    def backbone_capacity(self) -> BackboneCapacity | None: ...


@dataclass(frozen=True)
class WindowSize:
    """The window a shard works with now, and what it was sized from (logged and in the stats)."""

    frames: int
    source: WindowSource
    max_batch_size: int | None = None
    replicas: int | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "frames": self.frames,
            "source": self.source,
            "max_batch_size": self.max_batch_size,
            "replicas": self.replicas,
        }


def window_size(settings: Settings, pipeline: object, call_batch: int) -> WindowSize:
    """The in-flight window for ``pipeline``: pinned by ``settings.in_flight``, else from the backbone."""
    if settings.in_flight is not None:
        return WindowSize(settings.in_flight, "settings")
    capacity = pipeline.backbone_capacity() if isinstance(pipeline, ReportsBackbone) else None
    source: WindowSource = "backbone"
    if capacity is None:
        capacity, source = BackboneCapacity(call_batch, 1), "call_batch"
    return WindowSize(capacity.window, source, capacity.max_batch_size, capacity.replicas)
