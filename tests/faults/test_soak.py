"""The soak (``make soak``, never in CI): ten minutes at ~80 % of a worker's measured capacity with one
fault a minute in rotation — a worker SIGKILLed and replaced, Redis restarted, a worker SIGSTOPped past its
lease and SIGCONTed beside its successor — Redis memory and every worker's RSS sampled every 5 s.
At the end the books must balance and memory must be flat. ``POSESTREAM_SOAK_MINUTES`` shortens it."""

from __future__ import annotations

import contextlib
import os
import statistics
import threading
import time

import pytest
from harness import Published, WorkerProcess, check_books, finished, publish_mix, wait_for
from stream_helpers import cameras_on_distinct_shards, consumer_settings, image_bytes

from schemas.settings import Settings
from workers.client import FramePublisher

MINUTES = float(os.environ.get("POSESTREAM_SOAK_MINUTES", "10"))
FAULTS = ("worker SIGKILL + replacement", "Redis restart", "zombie SIGSTOP past the lease + SIGCONT")

pytestmark = [pytest.mark.soak, pytest.mark.timeout(int(MINUTES * 60 + 900))]


class Producer(threading.Thread):
    """Publishes at a fixed rate (policy wait: nothing dropped), riding out a Redis restart."""

    def __init__(self, settings: Settings, cameras: list[str], rate: float):
        super().__init__(daemon=True)
        self.settings, self.cameras, self.rate = settings, cameras, rate
        self.published: list[Published] = []
        self.failed_publishes = 0
        self.done = threading.Event()

    def run(self) -> None:
        image = image_bytes(128, 96)
        frame_id = 1000
        with FramePublisher(settings=self.settings, policy="wait", max_backlog=64, wait_timeout_s=120) as pub:
            while not self.done.is_set():
                camera = self.cameras[frame_id % len(self.cameras)]
                try:
                    outcome = pub.publish(image, camera, frame_id=frame_id)
                    self.published.append(
                        Published(outcome.entry_id, outcome.shard, "good", camera, frame_id)
                    )
                except Exception:  # noqa: BLE001 - Redis is restarting: this frame was never published
                    self.failed_publishes += 1
                    time.sleep(0.5)
                frame_id += 1
                time.sleep(1 / self.rate)


def _redis_bytes(client, settings: Settings) -> int:
    """Redis memory less the results streams, which the books need whole (capped at results_maxlen only);
    the rest — frames backlog, events (capped), dead letters, leases — must stay flat."""
    results = sum(client.memory_usage(keys.results, samples=0) or 0 for keys in settings.all_shard_keys())
    return int(client.info("memory")["used_memory"]) - results


def _rss(workers: list[WorkerProcess]) -> dict[int, int]:
    sizes = {}
    for worker in workers:
        with contextlib.suppress(FileNotFoundError):  # exited between the poll and the read
            sizes[worker.pid] = worker.rss_bytes()
    return sizes


def test_soak(own_redis, fault_checkpoint, tmp_path, books_table):
    settings = consumer_settings(
        own_redis.url, lease_ttl_ms=1500, max_deliveries=5, events_maxlen=2000, results_maxlen=20_000
    )
    client = own_redis.client()
    serial = iter(range(1000))
    workers = [WorkerProcess(settings, fault_checkpoint, tmp_path / "w0.log", "w0")]
    cameras = cameras_on_distinct_shards(shards=2, count=2)
    try:
        warm = publish_mix(client, settings, cameras, range(30), image_bytes(128, 96), bad_every=10)
        rate = len(warm) / wait_for(lambda: finished(client, settings) >= len(warm), 300, "the warm-up")
        producer = Producer(settings, cameras, 0.8 * rate)
        producer.start()
        samples: list[tuple[float, int, dict[int, int]]] = []
        faults: list[tuple[str, float]] = []
        started = time.monotonic()
        next_fault = started + 60
        while time.monotonic() - started < MINUTES * 60:
            time.sleep(5)
            alive = [w for w in workers if w.process.poll() is None]
            samples.append((time.monotonic() - started, _redis_bytes(client, settings), _rss(alive)))
            if time.monotonic() < next_fault:
                continue
            fault = FAULTS[len(faults) % len(FAULTS)]
            before = finished(client, settings)
            if fault.startswith("worker SIGKILL"):
                workers[0].kill()
                workers.pop(0)
                index = next(serial)
                workers.append(
                    WorkerProcess(settings, fault_checkpoint, tmp_path / f"k{index}.log", f"k{index}")
                )
            elif fault == "Redis restart":
                own_redis.stop()
                time.sleep(2.0)
                own_redis.start()
            else:
                zombie = workers[0]
                zombie.pause()
                time.sleep(settings.lease_ttl_ms / 1000 * 2)
                index = next(serial)
                workers.append(
                    WorkerProcess(settings, fault_checkpoint, tmp_path / f"z{index}.log", f"z{index}")
                )
                time.sleep(settings.lease_ttl_ms / 1000 * 2)
                zombie.resume()
            faulted_at = time.monotonic()
            resumed = lambda floor=before + 5: finished(client, settings) > floor  # noqa: E731
            wait_for(resumed, 180, f"work after {fault!r}")
            faults.append((fault, time.monotonic() - faulted_at))
            next_fault = started + 60 * (len(faults) + 1)  # one a minute, however long recovery took
        producer.done.set()
        producer.join(timeout=60)
        published = warm + producer.published
        wait_for(lambda: finished(client, settings) >= len(published), 300, "the backlog drained")
        for worker in workers:
            if worker.process.poll() is None:
                worker.stop()
    finally:
        for worker in workers:
            worker.ensure_stopped()
    row = check_books(client, settings, published, f"soak {MINUTES:g} min at 80 %, a fault a minute")
    redis_mb = [memory / 2**20 for _, memory, _ in samples]  # without the results streams
    third = max(1, len(redis_mb) // 3)
    # A worker's growth over the second half of its life (model loading, slow on a busy CPU, is over).
    growth = {
        pid: (values[-1] - values[len(values) // 2]) / 2**20
        for pid in {pid for _, _, rss in samples for pid in rss}
        if len(values := [rss[pid] for _, _, rss in samples if pid in rss]) >= 8
    }
    row.notes = {
        "rate_fps": round(0.8 * rate, 1),
        "faults": len(faults),
        "recovery_s_max": round(max((s for _, s in faults), default=0.0), 1),
        "redis_mb_first_third": round(statistics.mean(redis_mb[:third]), 2),
        "redis_mb_last_third": round(statistics.mean(redis_mb[-third:]), 2),
        "worker_rss_growth_mb_max": round(max(growth.values(), default=0.0), 1),
        "failed_publishes": producer.failed_publishes,
    }
    books_table(row)
    for fault, recovery in faults:
        print(f"soak fault: {fault}: work resumed after {recovery:.1f} s")
    assert len(faults) >= int(MINUTES) - 1
    # Flat: the retained outputs are capped, the frames backlog bounded; Redis ends where it settled.
    assert statistics.mean(redis_mb[-third:]) < statistics.mean(redis_mb[:third]) + 4
    assert max(growth.values(), default=0.0) < 150  # a worker's memory does not grow with time
    client.close()
