"""Model versions inside one stage replica: ``{version: stage}`` with reference counts.

The version travels with each request (DESIGN.md, "Delivery semantics"): the backbone stamps a frame with
its current version and the later stages run that same version. A reconfigure that brings a new checkpoint
makes it current for new frames; the replaced version stays loaded while requests hold it and for a grace
period after the swap (frames already past the backbone still reach the later stages with it), so a live
swap never mixes versions inside one frame.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Generic, Literal, TypeVar

import structlog
from pydantic import BaseModel, ConfigDict, Field

from model.test_time import TestTimeAugmentation

log = structlog.get_logger()

StageT = TypeVar("StageT")


class ModelVersionUnavailable(RuntimeError):
    """A request asked for a version this replica does not hold (not loaded yet, or already dropped).

    Retryable: the caller tries again (another replica, or this one after its reconfigure), and a frame that
    still fails stays pending for the shard owner to retry from the start with the current version.
    """


class StageConfig(BaseModel):
    """A model stage's ``user_config`` (deploy/serve_config.yaml): changing it is a lightweight update."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    checkpoint: str | None = None  # None: the default checkpoint when present, else an untrained preset
    preset: str = "demo"
    device: str | None = None  # None: cuda when this replica has a GPU
    max_batch_size: int = Field(ge=1)
    batch_wait_timeout_s: float = Field(ge=0)
    drain_grace_s: float = Field(ge=0)  # how long a replaced version stays for frames already in flight
    # A batch computing longer than this is stuck (a hung thread, a wedged device): the replica reports
    # itself unhealthy and Serve replaces it; callers' timeouts have sent its frames elsewhere meanwhile.
    hung_after_s: float = Field(120.0, gt=0)
    # Multi-scale / flip test-time augmentation: the backbone's alone (other stages ignore it). Off by
    # default; `posestream infer --scales … --flip` with the same values gives the same persons.
    test_time: TestTimeAugmentation = TestTimeAugmentation()
    # What runs the backbone's network, the backbone's alone too: "onnx" is ONNX Runtime (the onnx extra;
    # the CUDA provider when this replica has a GPU and onnxruntime-gpu is installed, else CPU), the graph
    # exported once per node into the cache. Other stages run torch whatever this says.
    backend: Literal["torch", "onnx"] = "torch"

    @property
    def source(self) -> tuple[str | None, str, str | None, TestTimeAugmentation, str]:
        return (self.checkpoint, self.preset, self.device, self.test_time, self.backend)


def load_part_stage(config: StageConfig, part: str) -> tuple[str, Any] | None:
    """``(version, stage)`` built from the checkpoint's ``part`` alone (``model.part_stage``), or None when
    there is no checkpoint (the untrained preset is seeded as a whole network, so only the whole pipeline
    gives a stage the same weights as the other replicas and ``infer``)."""
    from model.checkpoint import DEFAULT_CHECKPOINT

    checkpoint = Path(config.checkpoint) if config.checkpoint else DEFAULT_CHECKPOINT
    if not checkpoint.is_file():
        if config.checkpoint:  # an explicit path that is not there fails as the whole pipeline would
            from model.checkpoint import CheckpointError

            raise CheckpointError(f"checkpoint not found: {checkpoint}")
        return None
    from model.part_stage import load_part_stage as load

    return load(checkpoint, part, config.device)


def load_pipeline(
    checkpoint: str | None,
    preset: str,
    device: str | None,
    test_time: TestTimeAugmentation | None = None,
    backend: str = "torch",
) -> Any:
    """The single-process pipeline (the very one ``posestream infer`` uses) that a stage slices.

    An untrained model is seeded there, so every replica (and ``infer``) builds the same weights.
    """
    from model.pipeline import PosePipeline

    return PosePipeline.load(
        Path(checkpoint) if checkpoint else None,
        device=device,
        preset=preset,
        test_time=test_time,
        backend=backend,
    )


@dataclass
class _Held(Generic[StageT]):
    stage: StageT
    source: tuple[str | None, str, str | None, TestTimeAugmentation, str]
    in_use: int = 0
    retired_at: float | None = None  # monotonic time it stopped being current


@dataclass
class VersionedStages(Generic[StageT]):
    """The stage objects this replica holds, by model version; thread-safe (stages run in threads)."""

    make_stage: Callable[[Any], StageT]  # PosePipeline -> this deployment's stage
    name: str
    # A checkpoint part the stage runs alone (prn, activity): built from that part only, never the whole
    # network (a replica's memory: README, "Memory"). None: the stage is sliced from the whole pipeline.
    part: str | None = None
    _held: dict[str, _Held[StageT]] = field(default_factory=dict)
    _current: str | None = None
    _grace_s: float = 0.0
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def current(self) -> str:
        if self._current is None:
            raise ModelVersionUnavailable(f"{self.name}: no model loaded yet")
        return self._current

    def versions(self) -> dict[str, int]:
        """Held versions and their in-flight request counts."""
        with self._lock:
            return {version: held.in_use for version, held in self._held.items()}

    def configure(self, config: StageConfig) -> str:
        """Make ``config``'s model current (loading it unless already held); blocking, call off the loop."""
        self._grace_s = config.drain_grace_s
        with self._lock:
            for version, held in self._held.items():
                if held.source == config.source and version == self._current:
                    return version
        alone = load_part_stage(config, self.part) if self.part is not None else None
        if alone is not None:
            version, stage = alone
        else:
            pipeline = load_pipeline(
                config.checkpoint, config.preset, config.device, config.test_time, config.backend
            )
            version = str(pipeline.model_version)
            stage = self.make_stage(pipeline)
        with self._lock:
            previous = self._current
            if version in self._held:
                # Same version string again (e.g. the file was rewritten): the freshly loaded weights win.
                self._held[version].stage = stage
                self._held[version].source = config.source
                self._held[version].retired_at = None
            else:
                self._held[version] = _Held(stage=stage, source=config.source)
            self._current = version
            if previous is not None and previous != version:
                self._held[previous].retired_at = time.monotonic()
        log.info("model_version_loaded", stage=self.name, version=version, previous=previous)
        self.prune()
        return version

    @contextmanager
    def acquire(self, version: str | None) -> Iterator[tuple[str, StageT]]:
        """Hold ``version`` (the current one when None) for the duration of a request."""
        with self._lock:
            wanted = version if version is not None else self._current
            held = self._held.get(wanted) if wanted is not None else None
            if held is None:
                raise ModelVersionUnavailable(
                    f"{self.name}: model version {wanted!r} not held here (holding {sorted(self._held)})"
                )
            held.in_use += 1
        try:
            yield wanted, held.stage
        finally:
            with self._lock:
                held.in_use -= 1
            self.prune()

    def prune(self) -> None:
        """Drop replaced versions that no request holds and whose grace period is over."""
        now = time.monotonic()
        with self._lock:
            drained = [
                version
                for version, held in self._held.items()
                if held.retired_at is not None and held.in_use == 0 and now - held.retired_at >= self._grace_s
            ]
            for version in drained:
                del self._held[version]
        for version in drained:
            log.info("model_version_dropped", stage=self.name, version=version)


def _assigned_gpus() -> list[Any]:
    import ray

    return list(ray.get_gpu_ids()) if ray.is_initialized() else []


@dataclass(frozen=True)
class _Failed:
    """One request's failure inside a batch (a batch can only return values, one per request)."""

    error: BaseException


class ModelStageReplica:
    """What every model stage deployment shares: versions via ``reconfigure``, batches run off the loop.

    A subclass names its stage, picks its slice of the pipeline (``make_stage``), and defines one
    ``@serve.batch`` method that calls ``_run_batch``; Serve passes the batching numbers in ``user_config``.
    """

    stage_name: str = "stage"
    uses_backend: bool = False  # whether StageConfig.backend is this stage's to honour (the backbone's)
    part: str | None = None  # the one checkpoint part this stage needs, loaded alone (VersionedStages.part)

    def __init__(self) -> None:
        self._versions: VersionedStages[Any] = VersionedStages(self.make_stage, self.stage_name, self.part)
        self._batch_sizes: list[int] = []  # most recent batch sizes, for tests and the bench
        self._hung_after_s = StageConfig.model_fields["hung_after_s"].default
        self._max_batch_size: int | None = None  # from user_config; the consumer sizes its window from it
        self._device_type: str | None = None  # "cpu" / "cuda": the consumer queues a batch only on a GPU
        self._computing: dict[int, float] = {}  # batch number → monotonic start, while it computes
        self._batches_started = 0

    @staticmethod
    def make_stage(pipeline: Any) -> Any:
        raise NotImplementedError

    def _batched_method(self) -> Any:
        raise NotImplementedError

    async def reconfigure(self, user_config: dict[str, Any]) -> None:
        config = StageConfig.model_validate(user_config or {})
        if config.device is None:
            # The device follows what this replica was given (deploy config), not what the node has.
            config = config.model_copy(update={"device": "cuda" if _assigned_gpus() else "cpu"})
        if not self.uses_backend:
            # A shared user_config anchor may say onnx: PRN / activity replicas must not export a backbone.
            config = config.model_copy(update={"backend": "torch"})
        await asyncio.to_thread(self._versions.configure, config)
        self._hung_after_s = config.hung_after_s
        self._max_batch_size = config.max_batch_size
        self._device_type = str(config.device).split(":", 1)[0]
        batched = self._batched_method()
        batched.set_max_batch_size(config.max_batch_size)
        batched.set_batch_wait_timeout_s(config.batch_wait_timeout_s)

    async def _run_batch(self, requests: list[tuple[str | None, Any]]) -> list[Any]:
        """Run ``(version, item)`` requests grouped by version; each group is one call of the stage."""
        from workers.serve.metrics import stage_metrics

        self._batch_sizes = [*self._batch_sizes[-999:], len(requests)]
        results: list[Any] = [None] * len(requests)
        groups: dict[str | None, list[int]] = {}
        for index, (version, _) in enumerate(requests):
            groups.setdefault(version, []).append(index)
        for version, indices in groups.items():
            try:
                with self._versions.acquire(version) as (held_version, stage):
                    started = time.perf_counter()
                    outputs = await self._compute(stage, [requests[i][1] for i in indices])
                    compute_ms = (time.perf_counter() - started) * 1000.0
                stage_metrics().batch(self.stage_name, held_version, len(indices), compute_ms)
                for i, output in zip(indices, outputs, strict=True):
                    results[i] = (held_version, output)
            except Exception as error:  # noqa: BLE001 - handed to each caller of the group
                for i in indices:
                    results[i] = _Failed(error)
        return results

    async def _compute(self, stage: Any, items: list[Any]) -> Any:
        """The stage on a batch, in a thread (off the event loop, so health checks keep being answered)."""
        self._batches_started += 1
        batch = self._batches_started
        self._computing[batch] = time.monotonic()
        try:
            return await asyncio.to_thread(stage, items)
        finally:
            del self._computing[batch]

    def longest_computing_s(self) -> float:
        """How long the oldest batch still computing has been at it (0 when none is)."""
        return time.monotonic() - min(self._computing.values()) if self._computing else 0.0

    def check_health(self) -> None:
        """Serve's health check: unhealthy while a batch has been computing for over ``hung_after_s``."""
        longest = self.longest_computing_s()
        if longest > self._hung_after_s:
            raise RuntimeError(
                f"{self.stage_name}: a batch has been computing for {longest:.0f} s "
                f"(hung_after_s={self._hung_after_s:g}): replace this replica"
            )

    @staticmethod
    def _unwrap(result: Any) -> tuple[str, Any]:
        if isinstance(result, _Failed):
            raise result.error
        return result

    def batch_sizes(self) -> list[int]:
        """Sizes of the most recent batches (up to 1000)."""
        return list(self._batch_sizes)

    def model_versions(self) -> dict[str, Any]:
        """The current version, every held one with its in-flight request count, the batch size and the
        device type it computes on."""
        return {
            "current": self._versions.current,
            "held": self._versions.versions(),
            "max_batch_size": self._max_batch_size,
            "device_type": self._device_type,
        }
