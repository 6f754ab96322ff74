"""CPU time of the sides a benchmark compares: wall ms / frame favours the side given more cores, CPU-seconds
/ frame does not. ``CpuClock`` for work in this process (all its threads); ``tree_cpu_s`` + ``cpu_delta``
for a stack of processes (Ray replicas and daemons, the embedded Redis) that this process started.
"""

from __future__ import annotations

import os
import time
from typing import Any


class CpuClock:
    """Wall and CPU time of this process around a block: ``time.process_time`` sums every thread of the
    process (torch's intra-op pool included), so CPU-s / frame compares a 1-thread and an N-thread side
    fairly where wall ms / frame favours the one given more cores."""

    def __enter__(self) -> CpuClock:
        self.wall_s = self.cpu_s = 0.0
        self._wall, self._cpu = time.perf_counter(), time.process_time()
        return self

    def __exit__(self, *exc: object) -> None:
        self.wall_s = time.perf_counter() - self._wall
        self.cpu_s = time.process_time() - self._cpu


def tree_cpu_s(root: int | None = None) -> dict[int, tuple[str, float]]:
    """pid → (process name, user + system CPU seconds so far) for ``root`` (default: this process) and all
    its descendants: Ray's workers and daemons and the embedded Redis, when this process started them."""
    import psutil

    parent = psutil.Process(root)
    found: dict[int, tuple[str, float]] = {}
    for process in [parent, *parent.children(recursive=True)]:
        try:
            times = process.cpu_times()
            name = process_role(process)
        except (psutil.Error, OSError):
            continue  # gone between the listing and the read
        found[process.pid] = (name, times.user + times.system)
    return found


def process_role(process: Any) -> str:
    """A short name for what a process does: the Serve deployment of a replica, redis, raylet, …"""
    title = " ".join(process.cmdline()) or process.name()
    if "ServeReplica:" in title:
        return "replica:" + title.split("ServeReplica:", 1)[1].split()[0].split(":")[-1].split(".")[0]
    if process.pid == os.getpid():
        return "bench (this process)"
    for role in ("redis-server", "raylet", "gcs_server", "dashboard", "log_monitor", "ServeController"):
        if role in title:
            return role
    return "ray worker" if "ray::" in title or "default_worker" in title else process.name()


def cpu_delta(before: dict[int, tuple[str, float]], after: dict[int, tuple[str, float]]) -> dict[str, float]:
    """CPU seconds spent between two ``tree_cpu_s`` calls, summed per role (a process born in between
    counts from 0; one that died in between is lost: keep the stack up across both calls)."""
    spent: dict[str, float] = {}
    for pid, (role, cpu_s) in after.items():
        start = before.get(pid, (role, 0.0))[1]
        spent[role] = spent.get(role, 0.0) + max(cpu_s - start, 0.0)
    return {role: round(value, 3) for role, value in sorted(spent.items())}
