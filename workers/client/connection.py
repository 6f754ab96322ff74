"""Redis clients for producers and subscribers: reconnect with exponential backoff."""

from __future__ import annotations

import redis
from redis.backoff import ExponentialBackoff
from redis.retry import Retry

from schemas.settings import Settings

DEFAULT_URL = "redis://localhost:6379/0"


def resolve_redis_url(url: str | None = None, settings: Settings | None = None) -> str:
    """The URL to use: the explicit one, else ``POSESTREAM_REDIS_URL``, else the local default."""
    if url:
        return url
    settings = settings or Settings()
    return settings.redis_url or DEFAULT_URL


def connect(
    url: str, retries: int = 8, socket_timeout: float | None = 10.0, backoff_cap_s: float = 2.0
) -> redis.Redis:
    """A client whose commands retry on connection errors (a restarting Redis) with exponential backoff.

    ``retries=8`` with the default base (8 ms) and a 2 s cap rides out a restart of a few seconds;
    callers that loop forever (subscribers) also catch ``ConnectionError`` and re-issue themselves.
    """
    retry = Retry(ExponentialBackoff(cap=backoff_cap_s), retries)
    return redis.Redis.from_url(
        url,
        retry=retry,
        retry_on_error=[redis.ConnectionError, redis.TimeoutError],
        socket_timeout=socket_timeout,
        socket_connect_timeout=5.0,
        health_check_interval=30,
    )
