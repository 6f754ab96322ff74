"""ShardReader: the consumer group of one shard's frames stream.

On taking a shard the new owner first claims every pending entry (its predecessor is fenced off, so
the minimum idle time is 0), then reads new entries (``>``) in batches. Delivery counts come from
XPENDING's extended form; they grow on every read and claim, across owners, which is what the poison
bound needs.
"""

from __future__ import annotations

from dataclasses import dataclass

import redis.asyncio as aioredis
import structlog
from redis.exceptions import OutOfMemoryError, ResponseError

from schemas.streams import StreamKeys

log = structlog.get_logger()


@dataclass
class Entry:
    """One frames-stream entry as delivered to this consumer."""

    entry_id: str
    fields: dict[bytes, bytes]
    deliveries: int = 1  # times_delivered from XPENDING; 1 for a first read with ">"

    @property
    def xadd_ms(self) -> int:
        """The entry's XADD time on the Redis clock (the id's millisecond part)."""
        return int(self.entry_id.split("-", 1)[0])


def _id(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


class ShardReader:
    def __init__(self, client: aioredis.Redis, keys: StreamKeys, group: str, consumer: str):
        self.client = client
        self.keys = keys
        self.group = group
        self.consumer = consumer

    async def ensure_group(self) -> None:
        """Create the group (and the stream) if missing; from id 0 so earlier frames are not skipped."""
        try:
            await self.client.xgroup_create(self.keys.frames, self.group, id="0", mkstream=True)
            log.info("group_created", stream=self.keys.frames, group=self.group)
        except OutOfMemoryError:
            # Redis 7 refuses XGROUP CREATE at maxmemory before it can answer BUSYGROUP: ask instead.
            groups = await self.client.xinfo_groups(self.keys.frames)
            if not any(_id(g["name"]) == self.group for g in groups):
                raise
        except ResponseError as exc:
            if not str(exc).startswith("BUSYGROUP"):
                raise

    async def claim_pending(self, limit: int = 100, cursor: str = "0-0") -> tuple[list[Entry], str]:
        """Claim pending entries of the group for this consumer, oldest first from ``cursor``, with
        delivery counts: at most ``limit`` (payloads and all). Returns them and the cursor to go on from
        ("0-0" once the whole PEL was scanned).

        Entries deleted while pending come back as nil on Redis 6.2 (7.0 drops them from the PEL and
        lists their ids): they are XACKed here so they do not stay pending forever.
        """
        entries: list[Entry] = []
        saw_deleted = False
        while True:
            cursor_raw, claimed, *_deleted = await self.client.xautoclaim(
                self.keys.frames,
                self.group,
                self.consumer,
                min_idle_time=0,
                start_id=cursor,
                count=limit - len(entries),
            )
            for entry_id, fields in claimed:
                if entry_id is None:
                    saw_deleted = True
                else:
                    entries.append(Entry(_id(entry_id), fields))
            cursor = _id(cursor_raw)
            if cursor == "0-0" or len(entries) >= limit:
                break
        if saw_deleted:
            await self._ack_deleted({e.entry_id for e in entries})
        await self.fill_deliveries(entries)
        if entries:
            log.info("pending_claimed", stream=self.keys.frames, count=len(entries))
        return entries, cursor

    async def _ack_deleted(self, claimed: set[str]) -> None:
        """XACK this consumer's pending ids that XAUTOCLAIM returned as nil (deleted entries, 6.2)."""
        rows = await self.client.xpending_range(
            self.keys.frames, self.group, "-", "+", count=len(claimed) + 10_000, consumername=self.consumer
        )
        await self._ack_if_deleted({_id(row["message_id"]) for row in rows} - claimed)

    async def _ack_if_deleted(self, entry_ids: set[str]) -> None:
        """XACK those of ``entry_ids`` that are no longer in the stream (deleted while pending); entries
        still there (e.g. ours, beyond a claim's limit) stay pending."""
        if not entry_ids:
            return
        ordered = sorted(entry_ids)
        async with self.client.pipeline(transaction=False) as pipe:
            for entry_id in ordered:
                pipe.xrange(self.keys.frames, entry_id, entry_id)
            present = await pipe.execute()
        gone = [entry_id for entry_id, rows in zip(ordered, present, strict=True) if not rows]
        if gone:
            await self.client.xack(self.keys.frames, self.group, *gone)
            log.warning("deleted_pending_acked", stream=self.keys.frames, count=len(gone))

    async def claim_idle(self, min_idle_ms: int, skip: set[str], limit: int, page: int = 100) -> list[Entry]:
        """Claim entries pending at least ``min_idle_ms`` that are not in ``skip`` (the owner's window):
        XPENDING's IDLE filter lists them without touching them, page by page from an exclusive cursor,
        then XCLAIM with the same minimum idle time takes them (an entry answered meanwhile is left)."""
        stranded: list[str] = []
        start = "-"
        while True:
            rows = await self.client.xpending_range(
                self.keys.frames, self.group, start, "+", page, idle=min_idle_ms
            )
            stranded += [_id(row["message_id"]) for row in rows if _id(row["message_id"]) not in skip]
            if len(rows) < page or len(stranded) >= limit:
                break
            start = "(" + _id(rows[-1]["message_id"])
        stranded = stranded[:limit]
        if not stranded:
            return []
        claimed = await self.client.xclaim(self.keys.frames, self.group, self.consumer, min_idle_ms, stranded)
        entries = [Entry(_id(entry_id), fields) for entry_id, fields in claimed if entry_id is not None]
        # Deleted while pending (6.2 answers nil, 7.0 leaves it out), or answered meanwhile.
        await self._ack_if_deleted(set(stranded) - {e.entry_id for e in entries})
        await self.fill_deliveries(entries)
        if entries:
            log.warning("stranded_pending_claimed", stream=self.keys.frames, count=len(entries))
        return entries

    async def fill_deliveries(self, entries: list[Entry]) -> None:
        """Set each entry's delivery count from XPENDING (one round trip for the batch)."""
        if not entries:
            return
        async with self.client.pipeline(transaction=False) as pipe:
            for entry in entries:
                pipe.xpending_range(self.keys.frames, self.group, entry.entry_id, entry.entry_id, 1)
            replies = await pipe.execute()
        for entry, rows in zip(entries, replies, strict=True):
            if rows:
                entry.deliveries = int(rows[0]["times_delivered"])

    async def reclaim(self, entry: Entry) -> Entry | None:
        """Deliver an entry again to this consumer (a retry after a failure): the count grows by one.
        None when the entry is gone."""
        claimed = await self.client.xclaim(self.keys.frames, self.group, self.consumer, 0, [entry.entry_id])
        if not claimed or claimed[0][0] is None:
            await self.client.xack(self.keys.frames, self.group, entry.entry_id)
            log.warning("deleted_pending_acked", stream=self.keys.frames, entry_id=entry.entry_id)
            return None
        again = Entry(entry.entry_id, claimed[0][1])
        await self.fill_deliveries([again])
        return again

    async def read_new(self, count: int, block_ms: int) -> list[Entry]:
        """Up to ``count`` never-delivered entries, waiting up to ``block_ms`` for the first."""
        reply = await self.client.xreadgroup(
            self.group, self.consumer, {self.keys.frames: ">"}, count=count, block=block_ms
        )
        entries: list[Entry] = []
        for _stream, items in reply or []:
            for entry_id, fields in items:
                if entry_id is not None:
                    entries.append(Entry(_id(entry_id), fields or {}))
        return entries

    async def pending_count(self) -> int:
        """Entries delivered to some consumer of the group and not yet acknowledged."""
        summary = await self.client.xpending(self.keys.frames, self.group)
        return int(summary["pending"])

    async def length(self) -> int:
        """XLEN of the frames stream: acknowledged entries are deleted, so this is the backlog
        (undelivered plus pending)."""
        return int(await self.client.xlen(self.keys.frames))
