"""ServePipeline: the consumer's ``FramePipeline`` through DeploymentHandles (backbone → residual → activity).

One model version per frame: each call runs the version ``model_version`` showed when the call began
(the consumer reads it just before calling and stamps the frames with it); every stage is asked for that
version explicitly, and a stage keeps a replaced version loaded while frames drain. When a backbone
reports a newer current version, ``model_version`` moves to it for the following calls.

A failed stage call (replica died, actor unavailable, version not held there, back-pressure, no answer
within ``timeout_s``: a hung replica) is retried a bounded number of times with backoff; then it raises,
the consumer leaves the frame pending, and the shard's owner retries it later or dead-letters it as poison.
A call that timed out is cancelled, so the next attempt may reach another replica; the hung one reports
itself unhealthy (``ModelStageReplica.check_health``) and Serve replaces it.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeVar

import numpy as np
import ray.exceptions
import structlog
from pydantic import BaseModel, ConfigDict, Field
from ray.serve import exceptions as serve_exceptions
from ray.serve.handle import DeploymentHandle

from model.predictions import Detections, PersonPrediction, PosedPerson
from workers.serve.stage import ModelVersionUnavailable
from workers.streams.window import BackboneCapacity

log = structlog.get_logger()

T = TypeVar("T")

UNKNOWN_VERSION = "unknown"


class StageRetry(BaseModel):
    """How hard the pipeline tries one stage call before the frame is left pending (app args)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    attempts: int = Field(ge=1)
    backoff_s: float = Field(ge=0)  # first pause; doubles each time up to max_backoff_s
    max_backoff_s: float = Field(ge=0)
    timeout_s: float = Field(gt=0)  # one attempt's answer, batching wait and queueing included

    def pause(self, attempt: int) -> float:
        return min(self.max_backoff_s, self.backoff_s * 2 ** (attempt - 1))

    @property
    def longest_s(self) -> float:
        """The longest one stage call can take: every attempt timing out, with the pauses between."""
        return self.attempts * self.timeout_s + sum(self.pause(a) for a in range(1, self.attempts))


class StageCallTimeout(TimeoutError):
    """A stage replica did not answer within ``timeout_s`` (hung, or far behind): try another."""


# Failures of the call, not of the frame: another try (another replica, a restarted one) can succeed.
RETRYABLE_ERRORS: tuple[type[BaseException], ...] = (
    ray.exceptions.RayActorError,  # ActorDiedError, ActorUnavailableError
    ray.exceptions.WorkerCrashedError,
    ray.exceptions.ObjectLostError,
    serve_exceptions.BackPressureError,
    serve_exceptions.DeploymentUnavailableError,
    serve_exceptions.ReplicaUnavailableError,
    ModelVersionUnavailable,
    StageCallTimeout,
)


class StageCallFailed(RuntimeError):
    """A stage call failed on every attempt; the frame is to stay pending."""


class ServePipeline:
    """Frames → persons through the three model-stage deployments."""

    def __init__(
        self,
        backbone: DeploymentHandle,
        residual: DeploymentHandle,
        activity: DeploymentHandle,
        retry: StageRetry,
        metrics: Any | None = None,  # PipelineMetrics; None outside Ray
    ) -> None:
        self._backbone = backbone
        self._residual = residual
        self._activity = activity
        self._retry = retry
        self._metrics = metrics
        # The version the next call runs: the consumer reads it just before a call and stamps the call's
        # frames with it. Moves to the backbone's current version once a response reports a swap.
        self.model_version: str = UNKNOWN_VERSION
        # What the backbone can take at once, for the consumer's in-flight window (workers.streams.window):
        # its max_batch_size and device (asked with its versions) and its running replicas (Serve's status).
        self._backbone_batch: int | None = None
        self._backbone_replicas = 1
        self._backbone_device = "cpu"

    async def refresh(self) -> str:
        """Ask the backbone for its current version (before the first call, and after a version is gone)."""
        versions = await self._call("backbone", lambda: self._backbone.model_versions.remote())
        self.model_version = versions["current"]
        self._note_batch(versions)
        return self.model_version

    def backbone_capacity(self) -> BackboneCapacity | None:
        """The backbone's batch size and replicas, once a backbone has told its batch size (else None)."""
        if self._backbone_batch is None:
            return None
        return BackboneCapacity(self._backbone_batch, self._backbone_replicas, self._backbone_device)

    async def refresh_capacity(self) -> BackboneCapacity | None:
        """Ask again (a reconfigure may change the batch size, autoscaling the replicas); the consumer calls
        this with its metrics, off the frames' path. One try, not counted as a stage call's retries or
        failures: an error reaches the caller and the last known figures stay."""
        async with asyncio.timeout(self._retry.timeout_s):
            versions = await self._backbone.model_versions.remote()
        self._note_batch(versions)
        handle = self._backbone
        running = await asyncio.to_thread(_running_replicas, handle.app_name, handle.deployment_name)
        if running:
            self._backbone_replicas = running
        return self.backbone_capacity()

    def _note_batch(self, versions: dict[str, Any]) -> None:
        batch = versions.get("max_batch_size")
        if isinstance(batch, int) and batch >= 1:
            self._backbone_batch = batch
        device = versions.get("device_type")
        if isinstance(device, str) and device:
            self._backbone_device = device

    async def __call__(self, images: Sequence[np.ndarray]) -> list[list[PersonPrediction]]:
        # Read before the first await: the very value the consumer read just before calling.
        version = self.model_version
        if not images:
            return []
        if version == UNKNOWN_VERSION:
            version = await self.refresh()
        detected = await asyncio.gather(*(self._detect(image, version) for image in images))
        newest = {current for _, _, current in detected} - {version}
        if newest:
            self.model_version = sorted(newest)[0]  # used from the next call on
        persons = await asyncio.gather(*(self._persons(found, version) for _, found, _ in detected))
        return list(persons)

    async def _detect(self, image: np.ndarray, version: str) -> tuple[str, Detections, str]:
        try:
            ran, found, current = await self._call("backbone", lambda: self._backbone.remote(image, version))
        except StageCallFailed as error:
            if isinstance(error.__cause__, ModelVersionUnavailable):
                # The version was dropped everywhere: later calls run the current one, this frame goes
                # back to the consumer and is retried with it.
                await self.refresh()
            raise
        _check_version("backbone", version, ran)
        return ran, found, current

    async def _persons(self, detections: Detections, version: str) -> list[PersonPrediction]:
        if detections.num_persons == 0:
            # Nothing for PRN or activity to do; still a full result (a FrameResult with 0 persons).
            return []
        got, posed = await self._call("residual", lambda: self._residual.remote(detections, version))
        _check_version("residual", version, got)
        posed_people: list[PosedPerson] = posed
        got, predictions = await self._call("activity", lambda: self._activity.remote(posed_people, version))
        _check_version("activity", version, got)
        return predictions

    async def _call(self, stage: str, send: Callable[[], Awaitable[T]]) -> T:
        for attempt in range(1, self._retry.attempts + 1):
            started = time.perf_counter()
            try:
                result = await self._answer(stage, send())
            except RETRYABLE_ERRORS as error:
                kind = type(error).__name__
                if attempt == self._retry.attempts:
                    if self._metrics is not None:
                        self._metrics.failures.inc(tags={"stage": stage, "error": kind})
                    log.warning(
                        "stage_call_failed", stage=stage, attempts=attempt, error=kind, detail=repr(error)
                    )
                    raise StageCallFailed(f"{stage}: {kind} on all {attempt} attempts: {error}") from error
                if self._metrics is not None:
                    self._metrics.retries.inc(tags={"stage": stage, "error": kind})
                log.info("stage_call_retry", stage=stage, attempt=attempt, error=kind)
                await asyncio.sleep(self._retry.pause(attempt))
                continue
            if self._metrics is not None:
                self._metrics.call_ms.observe((time.perf_counter() - started) * 1000.0, tags={"stage": stage})
            return result
        raise AssertionError("unreachable: attempts >= 1")

    async def _answer(self, stage: str, response: Awaitable[T]) -> T:
        """``response``'s result within ``timeout_s``; past it the request is cancelled (a DeploymentResponse
        cancels the call on its replica) and ``StageCallTimeout`` raised."""
        try:
            async with asyncio.timeout(self._retry.timeout_s):
                return await response
        except TimeoutError as error:
            cancel = getattr(response, "cancel", None)
            if cancel is not None:
                cancel()
            raise StageCallTimeout(f"{stage}: no answer within {self._retry.timeout_s} s") from error


def _running_replicas(app_name: str, deployment: str) -> int:
    """Replicas of ``deployment`` RUNNING now, from Serve's status (a controller call: run it in a thread)."""
    from ray import serve

    app = serve.status().applications.get(app_name)
    overview = app.deployments.get(deployment) if app is not None else None
    if overview is None:
        return 0
    states = overview.replica_states.items()
    return int(sum(n for state, n in states if getattr(state, "value", state) == "RUNNING"))


def _check_version(stage: str, wanted: str, got: str) -> None:
    if got != wanted:
        # A stage must never answer with another version than asked: that would mix versions in a frame.
        raise RuntimeError(f"{stage} ran model version {got!r} for a frame of version {wanted!r}")
