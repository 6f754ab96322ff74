"""How many frames a shard's owner keeps in flight: enough to fill the backbone's next batch, no more.

Frames in flight are taken from the stream but not yet published. Batching needs some of them (a batch
can only fill from frames already taken), but every frame beyond what the backbone can take next only
waits in the consumer, and under overload that wait is latency. The rule (README, "Latency under
overload"): one batch of the backbone's ``max_batch_size`` for each of its replicas, and one batch queued
behind them only where the backbone computes on an accelerator: ``max_batch_size x replicas`` on CPU,
``max_batch_size x (replicas + 1)`` on a GPU.

Why the device matters: a queued batch keeps the backbone busy while the frames it just finished go
through PRN, activity and publishing. On a GPU that work runs beside the backbone's compute, so the queued
batch buys frames/s at no CPU cost. On CPU it shares the cores the backbone computes on: through Ray Serve
on 2 cores at 2x overload the queued batch bought 11 % more ok frames/s for 37 % more p50 and 72 % more
p95 latency (``bench.overload_latency --path serve`` against a control pinned at the former window; README,
"Latency under overload"), so on CPU the window keeps latency. Frames beyond the window stay in Redis,
where the producer sees the backlog and a live frame's ``max_age_s`` can still turn it stale, unrun.

``settings.in_flight`` pins the window instead. A pipeline that reports no backbone (the in-process
``LocalPipeline``) is one replica whose batch is one pipeline call of ``call_batch`` frames, on the device
it reports (``ReportsDevice``), else CPU.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal, Protocol, runtime_checkable

from schemas.settings import Settings

WindowSource = Literal["settings", "backbone", "call_batch"]
ACCELERATORS = frozenset({"cuda"})


@dataclass(frozen=True)
class BackboneCapacity:
    """What the backbone can take at once: its batch size, how many replicas run it, and on what device."""

    max_batch_size: int
    replicas: int
    device_type: str = "cpu"  # torch.device.type of the backbone's replicas: "cpu", "cuda"

    def __post_init__(self) -> None:
        if self.max_batch_size < 1 or self.replicas < 1:
            raise ValueError(f"max_batch_size and replicas must be >= 1, got {self}")

    @property
    def queued_batches(self) -> int:
        # one batch behind the computing ones where the rest of the pipeline runs beside the backbone
        return 1 if self.device_type in ACCELERATORS else 0

    @property
    def window(self) -> int:
        return self.max_batch_size * (self.replicas + self.queued_batches)


@runtime_checkable
class ReportsBackbone(Protocol):
    """A pipeline that knows its backbone's batching (the Serve pipeline); None while it does not yet."""

    def backbone_capacity(self) -> BackboneCapacity | None: ...


@runtime_checkable
class ReportsDevice(Protocol):
    """A pipeline that computes in this process and knows on what (the in-process ``LocalPipeline``)."""

    @property
    def device_type(self) -> str: ...


@dataclass(frozen=True)
class WindowSize:
    """The window a shard works with now, and what it was sized from (logged and in the stats)."""

    frames: int
    source: WindowSource
    max_batch_size: int | None = None
    replicas: int | None = None
    device_type: str | None = None
    queued_batches: int | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "frames": self.frames,
            "source": self.source,
            "max_batch_size": self.max_batch_size,
            "replicas": self.replicas,
            "device_type": self.device_type,
            "queued_batches": self.queued_batches,
        }


def window_size(settings: Settings, pipeline: object, call_batch: int) -> WindowSize:
    """The in-flight window for ``pipeline``: pinned by ``settings.in_flight``, else from the backbone."""
    if settings.in_flight is not None:
        return WindowSize(settings.in_flight, "settings")
    capacity = pipeline.backbone_capacity() if isinstance(pipeline, ReportsBackbone) else None
    source: WindowSource = "backbone"
    if capacity is None:
        device_type = pipeline.device_type if isinstance(pipeline, ReportsDevice) else "cpu"
        capacity, source = BackboneCapacity(call_batch, 1, device_type), "call_batch"
    return WindowSize(
        capacity.window,
        source,
        capacity.max_batch_size,
        capacity.replicas,
        capacity.device_type,
        capacity.queued_batches,
    )
