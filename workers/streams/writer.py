"""FencedWriter: every write for a frame is one Lua script guarded by the shard's fencing token.

The script checks that the owner key still holds this consumer's token, then XADDs the frame's
outputs (events + result, a stale result, or a dead letter; with tracking also the ActivityChanges and
the camera's new tracker state, see ``workers.streams.tracks``) with ``MAXLEN ~`` bounds, XACKs and XDELs
the frame, and forgets its strikes (see ``ShardConsumer._isolated``). A consumer stalled past its
lease publishes nothing (DESIGN.md, "The fence").

latency_ms: the messages arrive already msgpack-encoded (cmsgpack in Lua would change types), so
the script cannot fill in the latency itself. Instead the publisher reads Redis' ``TIME`` in one cheap
call just before publishing a group of finished frames, computes ``latency_ms`` from the frame's XADD
id time against it, and encodes in Python: both ends come from the Redis clock, and the only time not
counted is the one round trip between TIME and the script.

The script is loaded once (SCRIPT LOAD) and called by EVALSHA; after NOSCRIPT (a Redis restart
empties the script cache) it is loaded again and the call repeated. The script is also idempotent: if
the frame entry is already gone (a retried call whose first attempt ran but whose reply was lost), it
only XACKs and publishes nothing again.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import IntEnum
from typing import Any

import redis.asyncio as aioredis
from pydantic import ValidationError
from redis.asyncio.cluster import RedisCluster
from redis.exceptions import NoScriptError, OutOfMemoryError, ResponseError

from schemas.streams import StreamKeys
from schemas.wire import STREAM_FIELD, FrameResult, WireDecodeError

# KEYS: owner, frames, events, results, dead, strikes, changes, the camera's tracker state
# ARGV: token, group, entry id, events maxlen, results maxlen, dead maxlen, changes maxlen, state ttl ms,
#       state ('' = leave it), #events, events..., #changes, changes..., result, dead
FENCED_PUBLISH = """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then
  return 0
end
if #redis.call('XRANGE', KEYS[2], ARGV[3], ARGV[3]) == 0 then
  redis.call('XACK', KEYS[2], ARGV[2], ARGV[3])
  redis.call('HDEL', KEYS[6], ARGV[3])
  return 2
end
local at = 10
local n = tonumber(ARGV[at])
for i = 1, n do
  redis.call('XADD', KEYS[3], 'MAXLEN', '~', ARGV[4], '*', 'msg', ARGV[at + i])
end
at = at + n + 1
local c = tonumber(ARGV[at])
for i = 1, c do
  redis.call('XADD', KEYS[7], 'MAXLEN', '~', ARGV[7], '*', 'msg', ARGV[at + i])
end
at = at + c + 1
local result = ARGV[at]
if result ~= '' then
  redis.call('XADD', KEYS[4], 'MAXLEN', '~', ARGV[5], '*', 'msg', result)
end
local dead = ARGV[at + 1]
if dead ~= '' then
  redis.call('XADD', KEYS[5], 'MAXLEN', '~', ARGV[6], '*', 'msg', dead)
end
if ARGV[9] ~= '' then
  redis.call('SET', KEYS[8], ARGV[9], 'PX', ARGV[8])
end
redis.call('XACK', KEYS[2], ARGV[2], ARGV[3])
redis.call('XDEL', KEYS[2], ARGV[3])
redis.call('HDEL', KEYS[6], ARGV[3])
return 1
"""


class PublishStatus(IntEnum):
    FENCED = 0  # the shard has another owner now: nothing written
    PUBLISHED = 1
    ALREADY_DONE = 2  # the frame entry was already finished: nothing written again


class RedisFull(Exception):
    """Redis refused a write at ``maxmemory`` (``noeviction``). ``done`` holds the statuses of the frames
    published before the refusal, in order; the rest wrote nothing and may be published again later."""

    def __init__(self, done: list[PublishStatus], error: ResponseError):
        super().__init__(str(error))
        self.done = done


def is_out_of_memory(error: object) -> bool:
    """A write refused at maxmemory: 7.0 replies ``OOM …`` (redis-py's OutOfMemoryError) also from a
    script; 6.2 wraps it in ``Error running script … -OOM …``."""
    if isinstance(error, OutOfMemoryError):
        return True
    return isinstance(error, ResponseError) and "-OOM command not allowed" in str(error)


@dataclass
class Outputs:
    """The encoded outputs of one frame: events + result, a stale result, or a dead letter; with tracking,
    the activity changes and the camera's new tracker state."""

    entry_id: str
    events: list[bytes] = field(default_factory=list)
    result: bytes | None = None
    dead: bytes | None = None
    changes: list[bytes] = field(default_factory=list)
    camera_id: str | None = None  # whose tracker state ``state`` is
    state: bytes | None = None


@dataclass(frozen=True)
class Retention:
    """MAXLEN ~ bounds of the output streams; how long a camera's tracker state outlives its last frame."""

    events: int = 100_000
    results: int = 100_000
    dead: int = 10_000
    changes: int = 100_000
    state_ttl_ms: int = 3_600_000


class FencedWriter:
    def __init__(self, client: aioredis.Redis, keys: StreamKeys, group: str, retention: Retention):
        self.client = client
        self.keys = keys
        self.group = group
        self.retention = retention
        self._sha: str | None = None

    async def load(self) -> str:
        self._sha = await self.client.script_load(FENCED_PUBLISH)
        return self._sha

    async def newest_published(self, count: int = 512) -> dict[str, int]:
        """camera_id → the newest frame_id among the last ``count`` results of the shard, whoever published
        them: a new owner learns what its predecessors already published (for the overtaken rule)."""
        newest: dict[str, int] = {}
        for _entry_id, fields in await self.client.xrevrange(self.keys.results, count=count):
            try:
                result = FrameResult.from_bytes(fields.get(STREAM_FIELD.encode(), b""))
            except (WireDecodeError, ValidationError):
                continue  # not ours to judge here; subscribers skip it too
            newest[result.camera_id] = max(newest.get(result.camera_id, -1), result.frame_id)
        return newest

    async def redis_time_ms(self) -> float:
        """Redis' clock in milliseconds (TIME), read just before publishing."""
        seconds, micros = await self.client.time()
        return seconds * 1000.0 + micros / 1000.0

    def _args(self, token: str, out: Outputs) -> list[bytes | str | int]:
        r = self.retention
        if out.state is not None and out.camera_id is None:
            raise ValueError(f"tracker state without a camera for entry {out.entry_id}")
        return [
            token,
            self.group,
            out.entry_id,
            r.events,
            r.results,
            r.dead,
            r.changes,
            r.state_ttl_ms,
            out.state or b"",
            len(out.events),
            *out.events,
            len(out.changes),
            *out.changes,
            out.result or b"",
            out.dead or b"",
        ]

    def _keys(self, out: Outputs) -> list[str]:
        k = self.keys
        # A frame without a camera (a dead letter) writes no state: any key of the shard's slot will do.
        state_key = k.track_state(out.camera_id) if out.camera_id is not None else k.tracks
        return [k.owner, k.frames, k.events, k.results, k.dead, k.strikes, k.changes, state_key]

    async def publish(self, token: str, outputs: list[Outputs]) -> list[PublishStatus]:
        """Publish several frames' outputs in order, in one round trip; one status per frame."""
        if not outputs:
            return []
        if self._sha is None:
            await self.load()
        replies = await self._call_all(token, outputs)
        statuses: list[PublishStatus] = []
        for index, reply in enumerate(replies):
            if isinstance(reply, NoScriptError):
                # The cache was emptied (restart): everything from here failed the same way; redo in order.
                await self.load()
                for out in outputs[index:]:
                    try:
                        statuses.append(await self._publish_one(token, out))
                    except ResponseError as exc:
                        if not is_out_of_memory(exc):
                            raise
                        raise RedisFull(statuses, exc) from exc
                return statuses
            if is_out_of_memory(reply):
                # Refused at the script's first XADD, before it wrote anything.
                raise RedisFull(statuses, reply)
            if isinstance(reply, Exception):
                raise reply
            statuses.append(PublishStatus(int(reply)))
        return statuses

    async def _call_all(self, token: str, outputs: list[Outputs]) -> list[Any]:
        """The script's replies (an error as a value), in order. On a cluster redis-py refuses a pipelined
        EVALSHA: one call after another there, up to the first error (nothing past it is looked at)."""
        if not isinstance(self.client, RedisCluster):
            async with self.client.pipeline(transaction=False) as pipe:
                for out in outputs:
                    keys = self._keys(out)
                    pipe.evalsha(self._sha, len(keys), *keys, *self._args(token, out))
                return await pipe.execute(raise_on_error=False)
        replies: list[Any] = []
        for out in outputs:
            try:
                keys = self._keys(out)
                replies.append(
                    await self.client.evalsha(self._sha, len(keys), *keys, *self._args(token, out))
                )
            except ResponseError as exc:
                replies.append(exc)
                break
        return replies

    async def _publish_one(self, token: str, out: Outputs) -> PublishStatus:
        keys = self._keys(out)
        args = [*keys, *self._args(token, out)]
        try:
            reply = await self.client.evalsha(self._sha, len(keys), *args)
        except NoScriptError:
            await self.load()
            reply = await self.client.evalsha(self._sha, len(keys), *args)
        return PublishStatus(int(reply))
