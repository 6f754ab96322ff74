"""Redis clients for producers and subscribers: reconnect with exponential backoff; standalone or cluster."""

from __future__ import annotations

import redis
from redis.backoff import ExponentialBackoff
from redis.cluster import RedisCluster
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
    url: str,
    retries: int = 8,
    socket_timeout: float | None = 10.0,
    backoff_cap_s: float = 2.0,
    *,
    cluster: bool = False,
    settings: Settings | None = None,
) -> redis.Redis | RedisCluster:
    """A client whose commands retry on connection errors (a restarting Redis) with exponential backoff.

    ``retries=8`` with the default base (8 ms) and a 2 s cap rides out a restart of a few seconds;
    callers that loop forever (subscribers) also catch ``ConnectionError`` and re-issue themselves.
    ``cluster=True`` (``POSESTREAM_REDIS_CLUSTER``): a Redis Cluster client; ``url`` names any node.
    ``rediss://`` is TLS: the CA and client certificate come from the URL's ``ssl_*`` query or from
    ``settings`` (``POSESTREAM_REDIS_CA_FILE``, ``…_CERT_FILE``, ``…_KEY_FILE``).
    """
    retry = Retry(ExponentialBackoff(cap=backoff_cap_s), retries)
    options = dict(
        retry=retry,
        socket_timeout=socket_timeout,
        socket_connect_timeout=5.0,
        health_check_interval=30,
        **(settings or Settings()).redis_tls_options(url),
    )
    if cluster:  # follows MOVED/ASK and re-reads the slot map itself on connection errors
        return RedisCluster.from_url(url, **options)
    return redis.Redis.from_url(url, retry_on_error=[redis.ConnectionError, redis.TimeoutError], **options)
