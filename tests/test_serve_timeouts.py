"""A hung stage no longer stalls a shard: stage calls time out (and are cancelled) and are retried, a stage
replica whose batch hangs reports itself unhealthy, and the app refuses a stuck bound its retries exceed.
The Serve suite's SIGSTOP test (tests/serve/test_serve_app.py) runs the same against real replicas."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest
from pydantic import ValidationError

from workers.serve.app import AppConfig
from workers.serve.pipeline import ServePipeline, StageCallFailed, StageCallTimeout, StageRetry
from workers.serve.residual import PoseResidual


class NeverAnswers:
    """What a DeploymentResponse from a hung replica does: nothing, until cancelled."""

    def __init__(self) -> None:
        self.cancelled = False

    def cancel(self) -> None:
        self.cancelled = True

    def __await__(self):
        return asyncio.get_running_loop().create_future().__await__()


class Answers:
    def __init__(self, value) -> None:
        self.value = value

    def __await__(self):
        async def answer():
            return self.value

        return answer().__await__()


def _pipeline(timeout_s: float, attempts: int = 3) -> ServePipeline:
    retry = StageRetry(attempts=attempts, backoff_s=0.01, max_backoff_s=0.01, timeout_s=timeout_s)
    return ServePipeline(None, None, None, retry)  # handles unused: _call is given what to send


def test_a_call_that_never_answers_times_out_is_cancelled_and_retried():
    pipeline = _pipeline(timeout_s=0.2)
    sent: list[NeverAnswers] = []

    def send() -> NeverAnswers:
        sent.append(NeverAnswers())
        return sent[-1]

    started = time.monotonic()
    with pytest.raises(StageCallFailed) as failed:
        asyncio.run(pipeline._call("residual", send))
    assert isinstance(failed.value.__cause__, StageCallTimeout)
    assert len(sent) == 3 and all(response.cancelled for response in sent)  # each attempt cancelled
    assert time.monotonic() - started < 5  # bounded: 3 × 0.2 s plus pauses, not forever


def test_a_retry_that_reaches_a_live_replica_succeeds():
    pipeline = _pipeline(timeout_s=0.2)
    responses = iter([NeverAnswers(), Answers(("v1", "persons"))])
    assert asyncio.run(pipeline._call("residual", lambda: next(responses))) == ("v1", "persons")


def test_a_stage_replica_with_a_hung_batch_reports_unhealthy():
    replica = PoseResidual.func_or_class()
    replica._hung_after_s = 0.3
    release = threading.Event()

    def hung_stage(items):
        release.wait(30)  # a batch that never finishes (a wedged device, a deadlock)
        return items

    async def scenario() -> None:
        replica.check_health()  # idle: healthy
        batch = asyncio.create_task(replica._compute(hung_stage, ["detections"]))
        await asyncio.sleep(0.1)
        replica.check_health()  # computing, but not for long yet: healthy
        await asyncio.sleep(0.4)
        with pytest.raises(RuntimeError, match="computing for"):
            replica.check_health()
        release.set()
        assert await batch == ["detections"]
        replica.check_health()  # done: healthy again

    asyncio.run(scenario())


def test_stuck_call_must_exceed_three_stage_calls_at_their_longest():
    retry = {"attempts": 6, "backoff_s": 0.2, "max_backoff_s": 3.0, "timeout_s": 30}
    assert StageRetry(**retry).longest_s == pytest.approx(6 * 30 + 0.2 + 0.4 + 0.8 + 1.6 + 3.0)
    AppConfig(stage_retry=retry, stuck_call_s=600, stats_interval_s=2)
    with pytest.raises(ValidationError, match="stuck_call_s"):
        AppConfig(stage_retry=retry, stuck_call_s=500, stats_interval_s=2)
