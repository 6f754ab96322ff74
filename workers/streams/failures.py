"""How a shard consumer's work failed, and the cancellation check its loops make.

A consumer's failures are of three kinds, each handled apart (``ShardConsumer.run``): its lease is gone
(stop), Redis refused a write at ``maxmemory`` (wait, keep the window), Redis could not be reached
(drop the window, take the shard up again from its pending entries).
"""

from __future__ import annotations

import asyncio

from redis.exceptions import OutOfMemoryError

from workers.redis_errors import REDIS_UNREACHABLE

REDIS_ERRORS = (*REDIS_UNREACHABLE, OutOfMemoryError)  # the last: writes refused at maxmemory


class LeaseLost(Exception):
    """This consumer no longer owns the shard: stop working it at once."""


def raise_if_cancel_requested() -> None:
    """Raise CancelledError if this task was asked to cancel but is still running.

    On Python 3.11 ``asyncio.wait_for`` returns normally, swallowing the cancellation, when it is
    cancelled just as the awaited thing completes (CPython gh-86296; fixed in 3.12). redis-py wraps
    every socket write in it, so ``task.cancel()`` can be lost inside any Redis call. The request count
    (``Task.cancelling()``) survives, so loops check it: a cancelled consumer must stop for good.
    """
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError("cancellation requested (it was swallowed by an inner wait_for)")


def failure_kind(exc: BaseException) -> str | None:
    """ "lease" when the lease is gone, "full" when Redis refused a write for memory, "redis" when it could
    not be reached, None for anything else.
    The TaskGroup wraps errors (its body's too) in exception groups."""
    if isinstance(exc, BaseExceptionGroup):
        lost, rest = exc.split(LeaseLost)
        if lost is not None:
            return "lease"
        _down, other = rest.split(REDIS_ERRORS)
        if other is not None:
            return None
        full, _ = rest.split(OutOfMemoryError)
        return "full" if full is not None else "redis"
    if isinstance(exc, LeaseLost):
        return "lease"
    if isinstance(exc, OutOfMemoryError):
        return "full"
    return "redis" if isinstance(exc, REDIS_ERRORS) else None
