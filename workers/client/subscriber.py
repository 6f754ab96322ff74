"""EventSubscriber: read PersonEvents, FrameResults, DeadLetters and ActivityChanges from the output streams.

Two modes:
- position (XREAD): from ``$`` (what arrives from now on), ``0`` (everything retained) or an entry id.
  ``$`` is resolved to each stream's last id when the subscriber starts, so a reconnect re-issues the
  read from the last id seen and neither loses nor repeats entries.
- group (XREADGROUP + XACK): its own consumer group, for a subscriber that needs every event; an entry
  is acknowledged once the caller asks for the next one, and after a reconnect this consumer's pending
  entries are re-read first (at-least-once). The default consumer name holds the process id, so a
  restarted subscriber is a new consumer: at start, and every ``claim_idle_ms``, it takes over entries
  that another consumer of the group left pending for that long (a crashed predecessor), following the
  XAUTOCLAIM cursor, and reads them before new ones.

On a Redis Cluster (``settings.redis_cluster``) each shard's streams live in their own slot and one read
may not span slots (CROSSSLOT): the subscriber reads shard by shard, each read without blocking, and
blocks (at most 50 ms, on the shards in turn) only when a whole round found nothing.
"""

from __future__ import annotations

import os
import socket
import threading
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Literal

import redis
import structlog
from pydantic import ValidationError

from schemas.settings import Settings
from schemas.streams import shard_for
from schemas.wire import STREAM_FIELD, ActivityChange, DeadLetter, FrameResult, PersonEvent, WireDecodeError
from workers.client.connection import connect, resolve_redis_url
from workers.redis_errors import REDIS_UNREACHABLE

log = structlog.get_logger()

Kind = Literal["events", "results", "dead", "changes"]
KINDS: tuple[Kind, ...] = ("events", "results", "dead", "changes")
CLUSTER_BLOCK_MS = 50  # on a cluster a blocking read waits on one shard: keep the others' wait short
Message = PersonEvent | FrameResult | DeadLetter | ActivityChange
_MESSAGE_TYPES: dict[str, type[Message]] = {
    "events": PersonEvent,
    "results": FrameResult,
    "dead": DeadLetter,
    "changes": ActivityChange,
}


@dataclass(frozen=True)
class Received:
    stream: str
    entry_id: str
    kind: Kind
    message: Message


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


class EventSubscriber:
    """Iterate over output messages; ``for msg in sub`` yields the typed messages."""

    def __init__(
        self,
        redis_url: str | None = None,
        *,
        client: redis.Redis | None = None,
        settings: Settings | None = None,
        kinds: Iterable[Kind] = ("events", "results"),
        start: str = "$",
        group: str | None = None,
        consumer: str | None = None,
        camera_ids: Iterable[str] | None = None,
        block_ms: int = 1000,
        count: int = 100,
        reconnect_backoff_cap_s: float = 2.0,
        claim_idle_ms: int | None = 30_000,
    ) -> None:
        self.settings = settings or Settings()
        self.kinds = tuple(kinds)
        unknown = set(self.kinds) - set(KINDS)
        if unknown or not self.kinds:
            raise ValueError(f"kinds must be a non-empty subset of {KINDS}, got {self.kinds}")
        self.redis = client or connect(
            resolve_redis_url(redis_url, self.settings),
            socket_timeout=block_ms / 1000 + 10,
            cluster=self.settings.redis_cluster,
            settings=self.settings,
        )
        self.camera_ids = frozenset(camera_ids) if camera_ids else None
        self.group = group
        self.consumer = consumer or f"{socket.gethostname()}-{os.getpid()}"
        self.block_ms = block_ms
        self.count = count
        self.reconnect_backoff_cap_s = reconnect_backoff_cap_s
        self.reconnects = 0
        self.claim_idle_ms = claim_idle_ms  # None: never take over other consumers' pending entries
        self.claimed = 0  # entries taken over from other consumers of the group
        self._next_claim = 0.0  # time.monotonic() of the next orphan sweep
        self.skipped = 0  # entries that did not decode as their stream's message type
        shards = range(self.settings.shards)
        if self.camera_ids is not None:  # only the shards these cameras publish to
            shards = sorted({shard_for(c, self.settings.shards) for c in self.camera_ids})
        self._kind_of: dict[str, Kind] = {}
        self._slot_groups: list[list[str]] = []  # streams that one command may read together on a cluster
        for shard in shards:
            keys = self.settings.shard_keys(shard)
            self._slot_groups.append([getattr(keys, kind) for kind in self.kinds])
            for kind in self.kinds:
                self._kind_of[getattr(keys, kind)] = kind
        self._block_turn = 0  # cluster: the shard whose read blocks next
        self._start = start
        self.last_ids: dict[str, str] = {}  # stream → last entry id read (position mode)
        self._pending_first = True  # group mode: re-read this consumer's pending entries first
        self._unacked: list[tuple[str, str]] = []
        self._started = False

    @property
    def streams(self) -> list[str]:
        return list(self._kind_of)

    # -- set-up ------------------------------------------------------------------------------------

    def _resolve_start(self) -> None:
        for stream in self._kind_of:
            if self._start != "$":
                self.last_ids[stream] = self._start
                continue
            try:
                info = self.redis.xinfo_stream(stream)
                self.last_ids[stream] = _text(info["last-generated-id"])
            except redis.ResponseError:  # no such stream yet: everything that comes is new
                self.last_ids[stream] = "0-0"

    def _ensure_groups(self) -> None:
        for stream in self._kind_of:
            try:
                self.redis.xgroup_create(stream, self.group, id=self._start, mkstream=True)
            except redis.ResponseError as exc:
                if "BUSYGROUP" not in str(exc):
                    raise

    def _claim_orphans(self) -> None:
        """Group mode: make entries idle in other consumers' PELs for ``claim_idle_ms`` ours, then re-read
        our pending entries first, in id order. (Not JUSTID: redis-py drops the cursor of that reply.)"""
        if self.group is None or self.claim_idle_ms is None or time.monotonic() < self._next_claim:
            return
        self._next_claim = time.monotonic() + self.claim_idle_ms / 1000
        for stream in self._kind_of:
            cursor = "0-0"
            while True:
                cursor_raw, claimed, *_deleted = self.redis.xautoclaim(
                    stream, self.group, self.consumer, self.claim_idle_ms, cursor, self.count
                )
                if claimed:
                    self.claimed += len(claimed)
                    self._pending_first = True
                    log.info("subscriber_claimed_orphans", stream=stream, count=len(claimed))
                cursor = _text(cursor_raw)
                if cursor == "0-0":
                    break

    def _start_once(self) -> None:
        if self._started:
            return
        if self.group is None:
            self._resolve_start()
        else:
            self._ensure_groups()
        self._started = True

    # -- reading -----------------------------------------------------------------------------------

    def _read(self, block_ms: int | None) -> list:
        if not self.settings.redis_cluster:
            return self._read_streams(list(self._kind_of), block_ms)
        reply: list = []
        for streams in self._slot_groups:  # one slot per read: the others would answer CROSSSLOT
            reply += self._read_streams(streams, None)
        if reply or block_ms is None or self._pending_first:
            return reply
        streams = self._slot_groups[self._block_turn % len(self._slot_groups)]
        self._block_turn += 1
        return self._read_streams(streams, max(1, min(block_ms, CLUSTER_BLOCK_MS)))

    def _read_streams(self, streams: list[str], block_ms: int | None) -> list:
        if self.group is None:
            positions = {stream: self.last_ids[stream] for stream in streams}
            return self.redis.xread(positions, count=self.count, block=block_ms) or []
        position = "0" if self._pending_first else ">"
        return (
            self.redis.xreadgroup(
                self.group,
                self.consumer,
                {stream: position for stream in streams},
                count=self.count,
                block=None if self._pending_first else block_ms,
            )
            or []
        )

    def _ack(self) -> None:
        by_stream: dict[str, list[str]] = {}
        for stream, entry_id in self._unacked:
            by_stream.setdefault(stream, []).append(entry_id)
        for stream, ids in by_stream.items():
            self.redis.xack(stream, self.group, *ids)  # XACK is idempotent: a retry after an error is safe
        self._unacked.clear()

    def _decode(self, stream: str, entry_id: str, fields: dict) -> Received | None:
        kind = self._kind_of[stream]
        raw = fields.get(STREAM_FIELD.encode()) or fields.get(STREAM_FIELD)
        try:
            message = _MESSAGE_TYPES[kind].from_bytes(raw or b"")
        except (WireDecodeError, ValidationError) as exc:
            self.skipped += 1
            log.warning("subscriber_bad_entry", stream=stream, entry_id=entry_id, error=str(exc)[:200])
            return None
        camera = getattr(message, "camera_id", None)
        if self.camera_ids is not None and camera not in self.camera_ids:
            return None
        return Received(stream, entry_id, kind, message)

    def entries(
        self, follow: bool = True, idle_timeout_s: float | None = None, stop: threading.Event | None = None
    ) -> Iterator[Received]:
        """Yield received entries. ``follow=False`` stops once nothing more is there; with
        ``idle_timeout_s`` it stops after that long without a new entry; ``stop`` ends it from another
        thread (within ``block_ms``)."""
        backoff = 0.05
        last_seen = time.monotonic()
        while stop is None or not stop.is_set():
            try:
                self._start_once()
                if self.group is not None:
                    self._ack()
                    self._claim_orphans()
                block = self.block_ms if follow else None
                if idle_timeout_s is not None and follow:
                    left = idle_timeout_s - (time.monotonic() - last_seen)
                    if left <= 0:
                        return
                    block = max(1, min(self.block_ms, int(left * 1000)))
                was_pending_read = self.group is not None and self._pending_first
                reply = self._read(block)
                if was_pending_read and not any(entries for _, entries in reply):
                    self._pending_first = False
            except redis.AuthenticationError:
                raise  # a wrong password or a disabled user does not heal by reconnecting
            except REDIS_UNREACHABLE as exc:
                # redis-py's own retries are spent: wait and re-issue from the last ids. In group mode
                # a lost XREADGROUP reply left entries pending with us: re-read those first.
                self.reconnects += 1
                self._pending_first = True
                log.warning("subscriber_reconnect", error=str(exc), sleep_s=round(backoff, 3))
                time.sleep(backoff)
                backoff = min(backoff * 2, self.reconnect_backoff_cap_s)
                continue
            except redis.ResponseError as exc:
                if self.group is None or "NOGROUP" not in str(exc):
                    raise
                # A Redis restarted without persistence lost our group: make it again.
                self._started = False
                continue
            backoff = 0.05
            got = False
            for stream_name, stream_entries in reply or []:
                stream = _text(stream_name)
                for raw_id, fields in stream_entries:
                    entry_id = _text(raw_id)
                    got = True
                    if self.group is None:
                        self.last_ids[stream] = entry_id
                    elif fields is None:  # a pending entry deleted by trimming
                        self._unacked.append((stream, entry_id))
                        continue
                    else:
                        self._unacked.append((stream, entry_id))
                    received = self._decode(stream, entry_id, fields or {})
                    if received is not None:
                        yield received
            if got:
                last_seen = time.monotonic()
            elif not follow and not was_pending_read:
                if self.group is not None:
                    self._ack()
                return

    def messages(
        self, follow: bool = True, idle_timeout_s: float | None = None, stop: threading.Event | None = None
    ) -> Iterator[Message]:
        for received in self.entries(follow=follow, idle_timeout_s=idle_timeout_s, stop=stop):
            yield received.message

    def person_events(
        self, follow: bool = True, idle_timeout_s: float | None = None, stop: threading.Event | None = None
    ) -> Iterator[PersonEvent]:
        """Only the PersonEvents (``kinds`` must include "events")."""
        yield from self._only(PersonEvent, "events", follow, idle_timeout_s, stop)

    def activity_changes(
        self, follow: bool = True, idle_timeout_s: float | None = None, stop: threading.Event | None = None
    ) -> Iterator[ActivityChange]:
        """Only the ActivityChanges ("track 7 started running"; ``kinds`` must include "changes")."""
        yield from self._only(ActivityChange, "changes", follow, idle_timeout_s, stop)

    def _only(
        self,
        cls: type[Message],
        kind: Kind,
        follow: bool,
        idle_timeout_s: float | None,
        stop: threading.Event | None,
    ) -> Iterator[Message]:
        if kind not in self.kinds:
            raise ValueError(f"this subscriber reads {self.kinds}: pass kinds=(..., {kind!r}) to read {kind}")
        for message in self.messages(follow=follow, idle_timeout_s=idle_timeout_s, stop=stop):
            if isinstance(message, cls):
                yield message

    def __iter__(self) -> Iterator[Message]:
        return self.messages(follow=True)

    def close(self) -> None:
        try:
            if self.group is not None and self._unacked:
                self._ack()
        except redis.RedisError:
            pass
        self.redis.close()

    def __enter__(self) -> EventSubscriber:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
