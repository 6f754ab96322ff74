"""ShardConsumer: works one shard while its lease is held — read, validate, run, publish in order.

Flow per batch: claimed/read entries → poison check (delivery count) → parse (size, msgpack, schema,
header dimensions) → stale policy → image decode (in a thread) → the pipeline, up to a window of frames
at once (``workers.streams.window``: what the backbone can take next) → outcomes published per camera in
frame order through the fenced writer. Any Redis failure that outlasts redis-py's retries drops the
window (those frames stay pending) and the shard is taken up again from its pending entries, while the
lease is still ours. Redis at ``maxmemory`` (``noeviction``) is a wait, not a failure: a refused publish
keeps the window and the lease and is retried with backoff until memory frees (DESIGN.md, "Delivery
semantics").

Poison: an entry delivered before (claimed from a crashed or fenced window) may be the frame that killed
its last owner, or only its neighbour. Such entries run alone, one at a time, with nothing else in
flight, and each lone attempt is first counted in the shard's strikes hash; a frame whose strikes pass
``max_deliveries`` is dead-lettered as poison. So a crash is only ever held against the frame that was
running alone when it happened, never against the frames that shared its window.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from typing import Any

import redis.asyncio as aioredis
import structlog
from redis.backoff import ExponentialBackoff
from redis.exceptions import ResponseError

from model.tracking import FrameOrderError
from schemas.settings import Settings
from schemas.streams import StreamKeys
from schemas.wire import STREAM_FIELD, DeadReason
from workers.pipeline import FramePipeline
from workers.streams.decode import FrameRejected, ParsedFrame, decode_image, entry_identity, parse_entry
from workers.streams.failures import REDIS_ERRORS, LeaseLost, failure_kind, raise_if_cancel_requested
from workers.streams.lease import ShardLease
from workers.streams.ordering import InFlightWindow, Slot
from workers.streams.outcomes import Dead, Gone, Ok, Stale, encode_outcome
from workers.streams.preview import PreviewWriter
from workers.streams.reader import Entry, ShardReader
from workers.streams.stale import StaleCandidate, StalePolicy, StaleRule
from workers.streams.stats import ConsumerStats
from workers.streams.tracks import CameraTracks, TrackStep, tracker_config
from workers.streams.window import WindowSize, window_size
from workers.streams.writer import FencedWriter, Outputs, PublishStatus, RedisFull, Retention

log = structlog.get_logger()


class ShardConsumer:
    def __init__(
        self,
        client: aioredis.Redis,
        shard: int,
        lease: ShardLease,
        pipeline: FramePipeline,
        settings: Settings,
        consumer_name: str,
        stats: ConsumerStats,
        *,
        call_batch: int | None = None,
    ):
        self.shard = shard
        self.keys: StreamKeys = settings.shard_keys(shard)
        self.lease = lease
        self.pipeline = pipeline
        self.settings = settings
        self.stats = stats
        self.call_batch = call_batch or settings.read_batch
        self.reader = ShardReader(client, self.keys, settings.group, consumer_name)
        retention = Retention(
            settings.events_maxlen,
            settings.results_maxlen,
            settings.dead_maxlen,
            settings.changes_maxlen,
            settings.track_state_ttl_s * 1000,
        )
        self.writer = FencedWriter(client, self.keys, settings.group, retention)
        self.tracks = CameraTracks(client, self.keys, tracker_config(settings)) if settings.tracking else None
        self.preview = PreviewWriter(client, self.keys, settings, stats)
        self.stale = StalePolicy(settings.stale_max_age_s, settings.stale_backlog)
        self.backoff = ExponentialBackoff(cap=2.0, base=0.05)
        self.window: InFlightWindow | None = None
        self.window_size: WindowSize = window_size(settings, pipeline, self.call_batch)
        self._calls: set[asyncio.Task[None]] = set()  # pipeline calls in flight
        self._calling_since: dict[int, float] = {}  # number of a pipeline call awaited now → its start
        self._call_numbers = itertools.count()
        self._newest_published: dict[str, int] = {}  # camera_id → newest frame_id published (ok/stale)
        self._stopping = False
        self.log = log.bind(shard=shard, consumer=consumer_name)

    @property
    def _claim_limit(self) -> int:
        """Entries taken by one claim (payloads and all): a window's worth, the rest on later turns."""
        return max(self.window_size.frames, self.settings.read_batch)

    @property
    def in_flight(self) -> int:
        return len(self.window) if self.window is not None else 0

    def longest_call_s(self) -> float:
        """How long the oldest pipeline call still awaited has taken so far (0 when none is)."""
        return time.monotonic() - min(self._calling_since.values()) if self._calling_since else 0.0

    def stop(self) -> None:
        """Graceful: read no more; frames in flight are finished and published."""
        self._stopping = True

    async def run(self) -> None:
        failures = 0
        while not self._stopping and self.lease.held:
            raise_if_cancel_requested()
            try:
                await self._work()
                await self.preview.close()
                return
            except (LeaseLost, *REDIS_ERRORS, BaseExceptionGroup) as exc:
                kind = failure_kind(exc)
                if kind == "lease":
                    return
                if kind is None:
                    raise
                failures += 1
                delay = self.backoff.compute(failures)
                if kind == "full":
                    self.stats.note_redis_full(True)
                    self.log.warning("redis_out_of_memory", error=repr(exc), retry_in_s=delay)
                else:
                    self.stats.redis_errors += 1
                    self.log.warning("redis_unavailable", error=repr(exc), retry_in_s=delay)
                await asyncio.sleep(delay)
            finally:
                self.window = None

    async def _work(self) -> None:
        if self.tracks is not None:
            self.tracks.forget()  # a predecessor, or a publish whose reply was lost, may have moved them
        await self.reader.ensure_group()
        await self.writer.load()
        # Frames a predecessor left pending may be older than ones it published: those are overtaken.
        for camera, frame_id in (await self.writer.newest_published()).items():
            self._newest_published[camera] = max(self._newest_published.get(camera, -1), frame_id)
        self.window_size = window_size(self.settings, self.pipeline, self.call_batch)
        self.window = window = InFlightWindow(self.window_size.frames, self._publish)
        self.log.info("consumer_window", **self.window_size.as_dict())
        reclaim_every = self.settings.reclaim_idle_ms / 2000
        next_reclaim = time.monotonic() + reclaim_every
        async with asyncio.TaskGroup() as tasks:
            await self._drain_pending(window, tasks)
            while not self._stopping:
                raise_if_cancel_requested()
                self._check_lease()
                room = await self._wait_for_room(window)
                try:
                    entries = await self.reader.read_new(
                        min(room, self.settings.read_batch), self.settings.read_block_ms
                    )
                except ResponseError as exc:
                    if "NOGROUP" not in str(exc):
                        raise
                    await self.reader.ensure_group()  # the stream was deleted under us
                    continue
                if not entries and len(window) == 0 and await self.reader.pending_count() > 0:
                    # Entries delivered but not in our window (e.g. read by a fenced-off predecessor
                    # after we took over, or a read whose reply was lost): finish them too.
                    await self._drain_pending(window, tasks)
                    continue
                elif time.monotonic() >= next_reclaim:
                    # The same under load: entries idle outside the window are stranded, not in progress.
                    next_reclaim = time.monotonic() + reclaim_every
                    entries += await self.reader.claim_idle(
                        self.settings.reclaim_idle_ms, window.entry_ids(), self._claim_limit
                    )
                await self._take(entries, window, tasks)

    async def _wait_for_room(self, window: InFlightWindow) -> int:
        """Room in the window, which follows the backbone: its batch size (a reconfigure) and replicas
        (autoscaling) may change while the window is full, so the size is looked at again every read block."""
        while True:
            size = window_size(self.settings, self.pipeline, self.call_batch)
            if size != self.window_size:
                self.log.info("consumer_window_resized", previous=self.window_size.frames, **size.as_dict())
                self.window_size = size
                window.resize(size.frames)
            try:
                async with asyncio.timeout(self.settings.read_block_ms / 1000):
                    return await window.wait_for_room()
            except TimeoutError:
                self._check_lease()

    async def _drain_pending(self, window: InFlightWindow, tasks: asyncio.TaskGroup) -> None:
        """Take every pending entry of the shard before any new one (the oldest frames first keep each
        camera's order), a window's room at a time so that payloads in memory stay bounded."""
        cursor = "0-0"
        while True:
            self._check_lease()
            room = await window.wait_for_room()
            claimed, cursor = await self.reader.claim_pending(room, cursor)
            await self._take(claimed, window, tasks)
            if cursor == "0-0":
                return

    def _check_lease(self) -> None:
        """Stop at once unless the lease is held: a token *and* a renewal within the ttl (a consumer that
        could not renew, e.g. stalled or cut off, must not go on reading or publishing)."""
        if not self.lease.held:
            raise LeaseLost(self.keys.owner)

    async def _take(self, entries: list[Entry], window: InFlightWindow, tasks: asyncio.TaskGroup) -> None:
        """Book a batch of entries into the window and start the pipeline on the good ones."""
        if not entries:
            return
        self.stats.frames_consumed += len(entries)
        self.stats.redeliveries += sum(1 for e in entries if e.deliveries > 1)
        parsed: list[tuple[Slot, ParsedFrame]] = []
        for entry in entries:
            slot = Slot(entry.entry_id, extra={"entry": entry})
            try:
                frame = parse_entry(
                    entry.entry_id,
                    entry.fields,
                    max_payload_bytes=self.settings.max_payload_bytes,
                    max_pixels=self.settings.max_pixels,
                )
            except FrameRejected as exc:
                window.add(slot)  # dead letters keep no camera order
                window.finish(slot, self._dead(exc))
                continue
            slot.camera_id, slot.frame_id = frame.frame.camera_id, frame.frame.frame_id
            slot.extra["parsed"] = frame
            window.add(slot)
            parsed.append((slot, frame))
        stale = await self._classify_stale(parsed)
        fresh: list[Slot] = []
        suspects: list[Slot] = []
        for slot, frame in parsed:
            if self._overtaken(slot):
                window.finish(slot, Stale(StaleRule.OVERTAKEN))
            elif frame.entry_id in stale:
                window.finish(slot, Stale(stale[frame.entry_id]))
            elif slot.extra["entry"].deliveries > 1:
                suspects.append(slot)
            else:
                fresh.append(slot)
        if suspects:
            await window.flush()  # stale results and dead letters first: they need no pipeline
            if self._calls:
                await asyncio.wait(set(self._calls))  # nothing else may run beside a suspect
            for slot in suspects:
                await self._isolated(slot, window)
        for start in range(0, len(fresh), self.call_batch):
            coro = self._infer(fresh[start : start + self.call_batch], window)
            try:
                call = tasks.create_task(coro)
            except RuntimeError:  # the group is shutting down (a sibling failed): we are being cancelled
                coro.close()
                return
            self._calls.add(call)
            call.add_done_callback(self._calls.discard)
        await window.flush()

    def _overtaken(self, slot: Slot) -> bool:
        """A redelivered frame older than a published frame of its camera (by this owner or, as the results
        stream's tail showed at takeover, by a predecessor)."""
        newest = self._newest_published.get(slot.camera_id or "", -1)
        return slot.extra["entry"].deliveries > 1 and slot.frame_id is not None and slot.frame_id < newest

    async def _isolated(self, slot: Slot, window: InFlightWindow) -> None:
        """Run one frame alone after counting the attempt (a crash now is this frame's fault)."""
        strikes = await self._strike(slot)
        if strikes > self.settings.max_deliveries:
            window.finish(slot, self._poison(slot, strikes))
            await window.flush()
            return
        await self._infer([slot], window)

    async def _strike(self, slot: Slot) -> int:
        """Count one lone attempt of the frame (kept a day; the fenced publish deletes it)."""
        async with self.reader.client.pipeline(transaction=False) as pipe:
            pipe.hincrby(self.keys.strikes, slot.entry_id, 1)
            pipe.pexpire(self.keys.strikes, 86_400_000)
            strikes, _ = await pipe.execute()
        return int(strikes)

    async def _classify_stale(self, parsed: list[tuple[Slot, ParsedFrame]]) -> dict[str, StaleRule]:
        own_bound = any(f.frame.max_age_s is not None for _, f in parsed)
        if not parsed or not (own_bound or self.stale.needs_clock or self.stale.needs_backlog):
            return {}
        now_ms = await self.writer.redis_time_ms() if own_bound or self.stale.needs_clock else None
        backlog = await self.reader.length() if self.stale.needs_backlog else None
        candidates = [
            StaleCandidate(
                f.entry_id,
                f.frame.camera_id,
                f.frame.frame_id,
                slot.extra["entry"].xadd_ms,
                f.frame.max_age_s,
            )
            for slot, f in parsed
        ]
        return self.stale.classify(candidates, now_ms=now_ms, backlog=backlog)

    async def _infer(self, slots: list[Slot], window: InFlightWindow) -> None:
        """Decode and run a group of frames; a failing group is retried frame by frame."""
        runnable: list[tuple[Slot, Any]] = []
        for slot in slots:
            try:
                decoded = await asyncio.to_thread(decode_image, slot.extra["parsed"], _payload(slot))
            except FrameRejected as exc:
                window.finish(slot, self._dead(exc))
                continue
            runnable.append((slot, decoded))
        if runnable:
            version = self.pipeline.model_version  # one model version per frame
            call = next(self._call_numbers)
            self._calling_since[call] = time.monotonic()
            try:
                try:
                    results = await self.pipeline([decoded.image for _, decoded in runnable])
                finally:
                    del self._calling_since[call]
                if len(results) != len(runnable):
                    raise ValueError(f"pipeline returned {len(results)} results for {len(runnable)} images")
            except Exception as exc:
                self.stats.pipeline_errors += 1
                self.log.warning("pipeline_failed", frames=len(runnable), error=repr(exc))
                if len(runnable) > 1:
                    await asyncio.gather(*(self._infer([slot], window) for slot, _ in runnable))
                else:
                    await self._retry(runnable[0][0], window)
                return
            for (slot, decoded), persons in zip(runnable, results, strict=True):
                slot.extra["size"] = (decoded.width, decoded.height)
                if slot.camera_id is not None and self.preview.wants(slot.camera_id):
                    slot.extra["image"] = decoded.image
                window.finish(slot, Ok(list(persons), version))
        await window.flush()

    async def _retry(self, slot: Slot, window: InFlightWindow) -> None:
        """Deliver a frame that failed alone again (one more strike); past the bound it is poison."""
        self._check_lease()
        again = await self.reader.reclaim(slot.extra["entry"])
        self.stats.redeliveries += 1
        if again is None:
            window.finish(slot, Gone())
            await window.flush()
            return
        slot.extra["entry"] = again
        strikes = await self._strike(slot)
        if strikes > self.settings.max_deliveries:
            window.finish(slot, self._poison(slot, strikes))
            await window.flush()
            return
        await asyncio.sleep(self.backoff.compute(strikes))
        await self._infer([slot], window)

    def _poison(self, slot: Slot, strikes: int) -> Dead:
        entry: Entry = slot.extra["entry"]
        camera_id, frame_id = slot.camera_id, slot.frame_id
        if camera_id is None:
            camera_id, frame_id = entry_identity(entry.fields)
        return Dead(
            DeadReason.POISON.value,
            f"failed alone {strikes - 1} times (delivered {entry.deliveries} times), "
            f"over max_deliveries={self.settings.max_deliveries}",
            entry.fields.get(STREAM_FIELD.encode(), b""),
            camera_id,
            frame_id,
        )

    @staticmethod
    def _dead(exc: FrameRejected) -> Dead:
        return Dead(exc.reason.value, exc.error, exc.payload, exc.camera_id, exc.frame_id)

    async def _publish(self, slots: list[Slot]) -> None:
        """Encode the finished slots' outputs (latency from Redis' TIME) and publish them fenced. While
        Redis refuses writes for memory, wait and publish the rest again: the slots stay in order."""
        refusals = 0
        while True:
            self._check_lease()
            now_ms = await self.writer.redis_time_ms()
            steps = await self._track(slots)
            limit = self.settings.dead_payload_bytes
            encoded = [
                (slot, out)
                for slot in slots
                if (out := encode_outcome(slot, now_ms, steps.get(slot), limit)) is not None
            ]
            try:
                statuses = await self.writer.publish(self.lease.token, [out for _, out in encoded])
            except RedisFull as full:
                refusals += 1
                self._book(encoded[: len(full.done)], full.done, steps)
                slots = [slot for slot, _ in encoded[len(full.done) :]]
                self.stats.note_redis_full(True)
                delay = self.backoff.compute(refusals)
                self.log.warning("redis_out_of_memory", waiting=len(slots), retry_in_s=delay, error=str(full))
                await asyncio.sleep(delay)
                continue
            self._book(encoded, statuses, steps)
            if refusals or self.stats.redis_full:
                self.stats.note_redis_full(False)
                self.log.info("redis_memory_freed", refusals=refusals)
            return

    async def _track(self, slots: list[Slot]) -> dict[Slot, TrackStep]:
        """Move each camera's tracker through the frames about to be published, in their order. An ok frame
        the tracker is already past becomes stale (overtaken); a stale frame is a missed frame."""
        if self.tracks is None:
            return {}
        tracked = [s for s in slots if s.camera_id is not None and isinstance(s.outcome, Ok | Stale)]
        await self.tracks.load(s.camera_id for s in tracked)
        batch = self.tracks.batch()
        steps: dict[Slot, TrackStep] = {}
        for slot in tracked:
            if isinstance(slot.outcome, Stale):
                if (step := batch.missed(slot.camera_id, slot.frame_id)) is not None:
                    steps[slot] = step
                continue
            try:
                steps[slot] = batch.seen(slot.camera_id, slot.frame_id, slot.outcome.persons)
            except FrameOrderError:
                slot.outcome = Stale(StaleRule.OVERTAKEN)
            except ValueError as exc:  # applied before with other persons (a model swap): publish untracked
                self.log.warning(
                    "frame_not_tracked", camera_id=slot.camera_id, frame_id=slot.frame_id, error=str(exc)
                )
        return steps

    def _book(
        self,
        encoded: list[tuple[Slot, Outputs]],
        statuses: list[PublishStatus],
        steps: dict[Slot, TrackStep] | None = None,
    ) -> None:
        for (slot, out), status in zip(encoded, statuses, strict=True):
            if status == PublishStatus.PUBLISHED and isinstance(slot.outcome, Ok) and "image" in slot.extra:
                parsed: ParsedFrame = slot.extra["parsed"]
                self.preview.offer(
                    parsed.frame.camera_id, parsed.frame.frame_id, parsed.frame.ts, slot.extra["image"]
                )
            step = (steps or {}).get(slot)
            if self.tracks is not None and step is not None:
                if status == PublishStatus.PUBLISHED:
                    self.tracks.commit(step)
                else:  # not written by this call: what Redis holds is read again
                    self.tracks.forget(step.camera_id)
            if status == PublishStatus.FENCED:
                self.stats.fenced += 1
                self.lease.lose("fenced at publish")
                raise LeaseLost(self.keys.owner)
            if status == PublishStatus.ALREADY_DONE:
                # With our token still valid this is our own call retried after a lost reply (redis-py's
                # Retry), or an entry deleted by someone else: booked as this frame's outcome, noted apart.
                self.stats.already_done += 1
                self.log.warning("frame_already_done", entry_id=slot.entry_id, camera_id=slot.camera_id)
            self._count(slot, out)

    def _count(self, slot: Slot, out: Outputs) -> None:
        outcome = slot.outcome
        if slot.camera_id is not None and slot.frame_id is not None and not isinstance(outcome, Dead):
            newest = self._newest_published.get(slot.camera_id, -1)
            self._newest_published[slot.camera_id] = max(newest, slot.frame_id)
            self.stats.frames_by_camera[slot.camera_id] += 1
        if isinstance(outcome, Dead):
            self.stats.frames_dead += 1
            self.stats.dead_by_reason[outcome.reason] += 1
            self.log.warning(
                "frame_dead",
                entry_id=slot.entry_id,
                reason=outcome.reason,
                error=outcome.error,
                camera_id=outcome.camera_id,
                frame_id=outcome.frame_id,
            )
        elif isinstance(outcome, Stale):
            self.stats.frames_stale += 1
            self.stats.stale_by_rule[outcome.rule.value] += 1
            self.log.debug("frame_stale", camera_id=slot.camera_id, frame_id=slot.frame_id, rule=outcome.rule)
        else:
            self.stats.frames_ok += 1
            self.stats.events_published += len(out.events)
            self.stats.activity_changes += len(out.changes)
            self.log.debug(
                "frame_done", camera_id=slot.camera_id, frame_id=slot.frame_id, persons=len(out.events)
            )


def _payload(slot: Slot) -> bytes:
    return slot.extra["entry"].fields.get(STREAM_FIELD.encode(), b"")
