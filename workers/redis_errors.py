"""The Redis errors that mean "not reachable right now", for standalone Redis and Redis Cluster alike.

A cluster in failover answers for a while with ``CLUSTERDOWN``, ``TRYAGAIN``, ``READONLY`` (a demoted
master) or not at all; redis-py's cluster client follows ``MOVED``/``ASK`` itself and raises these once its
own retries are spent. Every loop that rides out a restarting Redis rides out these the same way: wait,
reconnect, re-issue (the writes are fenced or idempotent).
"""

from __future__ import annotations

from redis.exceptions import (
    ClusterError,
    ConnectionError,
    ReadOnlyError,
    SlotNotCoveredError,
    TimeoutError,
    TryAgainError,
)

# ClusterError covers ClusterDownError and MasterDownError; SlotNotCoveredError is no RedisError at all.
REDIS_UNREACHABLE: tuple[type[Exception], ...] = (
    ConnectionError,
    TimeoutError,
    ClusterError,
    TryAgainError,
    ReadOnlyError,
    SlotNotCoveredError,
)
