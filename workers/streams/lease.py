"""ShardLease: one shard's ownership, with a fencing token (DESIGN.md, "Shards, ownership and the fence").

acquire: ``token = INCR epoch`` then ``SET owner token NX PX ttl``; renew: compare-and-PEXPIRE; release:
compare-and-DEL. The value stored is ``"{epoch}:{instance}"``: the epoch orders owners, and the random
instance part keeps tokens unique even if the epoch key were ever lost (a Redis without persistence),
so a stalled consumer can never match its successor's token. It is never the consumer *name*, which a
replacement replica reuses.
"""

from __future__ import annotations

import time
import uuid

import redis.asyncio as aioredis
import structlog

from schemas.streams import StreamKeys

log = structlog.get_logger()

_RENEW = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0
"""

_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
"""


class ShardLease:
    """One consumer's claim on one shard. ``held`` turns False as soon as a renewal fails or the
    local deadline (last successful renewal + ttl) passes, e.g. while Redis cannot be reached."""

    def __init__(self, client: aioredis.Redis, keys: StreamKeys, ttl_ms: int, instance: str | None = None):
        self.client = client
        self.keys = keys
        self.ttl_ms = ttl_ms
        self.instance = instance or uuid.uuid4().hex[:12]
        self.token: str | None = None
        self._deadline = 0.0  # time.monotonic() after which the lease is assumed lapsed
        self._renew = client.register_script(_RENEW)
        self._release = client.register_script(_RELEASE)

    @property
    def held(self) -> bool:
        return self.token is not None and time.monotonic() < self._deadline

    async def owner(self) -> str | None:
        value = await self.client.get(self.keys.owner)
        return value.decode() if value is not None else None

    async def acquire(self) -> bool:
        """Take the shard if nobody holds it. Returns whether this consumer now holds it."""
        if self.held:
            return True
        if await self.client.exists(self.keys.owner):
            return False  # held by someone: do not burn an epoch
        started = time.monotonic()
        epoch = await self.client.incr(self.keys.epoch)
        token = f"{epoch}:{self.instance}"
        if not await self.client.set(self.keys.owner, token, nx=True, px=self.ttl_ms):
            return False
        self.token = token
        self._deadline = started + self.ttl_ms / 1000
        log.info("lease_acquired", owner_key=self.keys.owner, token=token)
        return True

    async def renew(self) -> bool:
        """Extend the lease; False (and the lease dropped) when another consumer owns the shard now."""
        if self.token is None:
            return False
        started = time.monotonic()
        renewed = await self._renew(keys=[self.keys.owner], args=[self.token, self.ttl_ms])
        if renewed:
            self._deadline = started + self.ttl_ms / 1000
            return True
        self.lose("renewal refused")
        return False

    def lose(self, why: str) -> None:
        if self.token is not None:
            log.warning("lease_lost", owner_key=self.keys.owner, token=self.token, why=why)
        self.token = None

    async def release(self) -> None:
        """Give the shard up (graceful stop) so a stand-by consumer need not wait for the ttl."""
        token, self.token = self.token, None
        if token is not None:
            await self._release(keys=[self.keys.owner], args=[token])
            log.info("lease_released", owner_key=self.keys.owner, token=token)
