"""The fault suite's harness: a known mix of good and bad frames, worker processes to kill, stop and
restart, and the books — every published frame has exactly one final outcome.

A worker is ``posestream worker`` in its own OS process (the StreamConsumer with the in-process model), so
SIGKILL, SIGSTOP and SIGCONT are the real thing. The books are read from Redis alone.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import msgpack
import redis

from schemas.settings import Settings
from schemas.streams import shard_for
from schemas.wire import STREAM_FIELD, Frame

REPO = Path(__file__).resolve().parents[2]
# Bad frames mixed in with the good ones, each a different dead-letter reason.
BAD_KINDS = ("not_msgpack", "schema", "bad_image")


@dataclass(frozen=True)
class Published:
    entry_id: str
    shard: int
    kind: str  # "good" or one of BAD_KINDS
    camera_id: str | None = None
    frame_id: int | None = None


def frame_bytes(camera_id: str, frame_id: int, image: bytes, kind: str = "good") -> bytes:
    if kind == "not_msgpack":
        return b"\xc1 this is not msgpack"
    if kind == "bad_image":
        image = b"\x89PNG but not really"
    payload = Frame(camera_id=camera_id, frame_id=frame_id, ts=time.time(), image=image).to_bytes()
    if kind == "schema":  # the contract's required v missing
        message = msgpack.unpackb(payload, raw=False)
        del message["v"]
        payload = msgpack.packb(message, use_bin_type=True)
    return payload


def publish_mix(
    client: redis.Redis,
    settings: Settings,
    cameras: list[str],
    frame_ids: range,
    image: bytes,
    bad_every: int = 7,
) -> list[Published]:
    """Frames of every camera in turn; every ``bad_every``-th one is bad (the kinds in rotation)."""
    published: list[Published] = []
    count = 0
    for frame_id in frame_ids:
        for camera in cameras:
            count += 1
            kind = BAD_KINDS[(count // bad_every) % len(BAD_KINDS)] if count % bad_every == 0 else "good"
            shard = shard_for(camera, settings.shards)
            key = settings.shard_keys(shard).frames
            entry = client.xadd(key, {STREAM_FIELD: frame_bytes(camera, frame_id, image, kind)}).decode()
            published.append(Published(entry, shard, kind, camera, frame_id))
    return published


def finished(client: redis.Redis, settings: Settings) -> int:
    return sum(client.xlen(k.results) + client.xlen(k.dead) for k in settings.all_shard_keys())


def wait_for(condition, timeout_s: float, what: str, interval_s: float = 0.1) -> float:
    """Seconds it took; AssertionError past ``timeout_s``."""
    started = time.monotonic()
    while not condition():
        if time.monotonic() - started > timeout_s:
            raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")
        time.sleep(interval_s)
    return time.monotonic() - started


@dataclass
class BooksRow:
    """One line of the fault table."""

    fault: str
    frames: int
    outcomes: dict[str, int]
    duplicates: int  # frames with more than one final outcome
    lost: int  # frames with none
    redelivered_events: int  # event ids seen twice (identical copies: allowed after a redelivery)
    recover_s: float | None = None
    notes: dict[str, object] = field(default_factory=dict)


def _unpack(fields: dict) -> dict:
    return msgpack.unpackb(fields[STREAM_FIELD.encode()], raw=False)


def check_books(client: redis.Redis, settings: Settings, published: list[Published], fault: str) -> BooksRow:
    """Every published frame has exactly one final outcome (a result ok/stale, or a dead letter), event ids
    repeat only as identical copies, nothing is left in the frames streams, and each camera's ok results
    come in frame order. Raises AssertionError naming what broke; returns the table row."""
    # Entry ids are per stream: two shards' frames may share one, so an entry is (shard, id).
    by_entry = {(p.shard, p.entry_id): p for p in published}
    by_frame = {(p.camera_id, p.frame_id): (p.shard, p.entry_id) for p in published if p.kind == "good"}
    outcomes: dict[tuple[int, str], list[str]] = defaultdict(list)
    events: dict[str, list[dict]] = defaultdict(list)
    problems: list[str] = []
    for shard, keys in enumerate(settings.all_shard_keys()):
        order: dict[str, list[int]] = defaultdict(list)
        for _, fields in client.xrange(keys.results):
            result = _unpack(fields)
            entry = by_frame.get((result["camera_id"], result["frame_id"]))
            if entry is not None:
                outcomes[entry].append(result["status"])
                if result["status"] == "ok":  # a stale (overtaken) frame may end after newer ones
                    order[result["camera_id"]].append(result["frame_id"])
        for camera, frame_ids in order.items():
            if frame_ids != sorted(frame_ids):
                problems.append(f"{camera}: results out of frame order")
        for _, fields in client.xrange(keys.dead):
            dead = _unpack(fields)
            if (shard, dead["source_id"]) in by_entry:
                outcomes[(shard, dead["source_id"])].append(f"dead:{dead['reason']}")
        for _, fields in client.xrange(keys.events):
            event = _unpack(fields)
            events[event["event_id"]].append(event)
        left = client.xlen(keys.frames)
        pending = client.xpending(keys.frames, settings.group)["pending"] if left else 0
        if left or pending:
            problems.append(
                f"shard {keys.frames}: {left} entries left in the frames stream, {pending} pending"
            )
    for entry, published_frame in by_entry.items():
        got = outcomes.get(entry, [])
        if published_frame.kind != "good" and got and got[0] != f"dead:{published_frame.kind}":
            problems.append(f"{entry} ({published_frame.kind}) ended {got[0]}")
    redelivered = 0
    for event_id, copies in events.items():
        if len(copies) > 1:
            redelivered += 1
            if any(copy != copies[0] for copy in copies[1:]):
                problems.append(f"event {event_id} published twice with different contents")
    counts = Counter(outcome for got in outcomes.values() for outcome in got)
    row = BooksRow(
        fault=fault,
        frames=len(published),
        outcomes=dict(sorted(counts.items())),
        duplicates=sum(1 for entry in by_entry if len(outcomes.get(entry, [])) > 1),
        lost=sum(1 for entry in by_entry if not outcomes.get(entry)),
        redelivered_events=redelivered,
    )
    if row.duplicates:
        twice = [(entry, by_entry[entry].kind, got) for entry, got in outcomes.items() if len(got) > 1]
        problems.append(f"{row.duplicates} frames with more than one final outcome: {twice[:5]}")
    if row.lost:
        problems.append(f"{row.lost} frames without a final outcome")
    if problems:
        raise AssertionError(f"the books of '{fault}' do not balance: " + "; ".join(problems[:10]))
    return row


def worker_env(settings: Settings, checkpoint: Path) -> dict[str, str]:
    """POSESTREAM_* for a worker process: these settings and this checkpoint, one torch thread."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("POSESTREAM_")}
    values = settings.model_dump(mode="json", exclude_none=True)
    for name, value in values.items():
        env[f"POSESTREAM_{name.upper()}"] = value if isinstance(value, str) else json.dumps(value)
    env.update(POSESTREAM_CHECKPOINT=str(checkpoint), POSESTREAM_DEVICE="cpu", OMP_NUM_THREADS="1")
    return env


class WorkerProcess:
    """``posestream worker`` as a child process: SIGKILL (crash), SIGSTOP/SIGCONT (a zombie), SIGTERM
    (drain; its final stats come back)."""

    def __init__(self, settings: Settings, checkpoint: Path, log_path: Path, name: str):
        self.name = name
        self.log_path = log_path
        self._log = open(log_path, "ab")  # noqa: SIM115 - closed in wait()
        self.process = subprocess.Popen(
            [sys.executable, "-m", "workers.cli", "worker", "--name", name],
            cwd=REPO,
            env=worker_env(settings, checkpoint),
            stdout=subprocess.PIPE,
            stderr=self._log,
        )

    @property
    def pid(self) -> int:
        return self.process.pid

    def rss_bytes(self) -> int:
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
        return 0

    def kill(self) -> None:
        self.process.send_signal(signal.SIGKILL)
        self.wait()

    def pause(self) -> None:
        self.process.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        self.process.send_signal(signal.SIGCONT)

    def stop(self, timeout_s: float = 60.0) -> dict:
        """SIGTERM: drain and exit; returns the consumer's final stats."""
        self.process.send_signal(signal.SIGTERM)
        out, _ = self.process.communicate(timeout=timeout_s)
        self._log.close()
        if self.process.returncode != 0:
            raise AssertionError(f"worker {self.name} exited {self.process.returncode}: {self.tail()}")
        return json.loads(out.decode().strip().splitlines()[-1])

    def wait(self) -> None:
        self.process.wait(timeout=30)
        self._log.close()

    def tail(self) -> str:
        return self.log_path.read_text(errors="replace")[-3000:]

    def ensure_stopped(self) -> None:
        if self.process.poll() is None:
            self.process.kill()  # SIGKILL ends a stopped process too
            self.process.wait(timeout=30)
        if not self._log.closed:
            self._log.close()


def format_row(row: BooksRow) -> str:
    outcomes = ", ".join(f"{k} {v}" for k, v in row.outcomes.items())
    recover = f"{row.recover_s:.1f} s" if row.recover_s is not None else "-"
    notes = ", ".join(f"{k} {v}" for k, v in row.notes.items())
    return (
        f"| {row.fault} | {row.frames} | {outcomes} | {row.duplicates} | {row.redelivered_events} | "
        f"{row.lost} | {recover} | {notes} |"
    )
