"""The benchmarks' fairness plumbing (bench.common, bench.cputime, bench.stack): the order the sides take
turns in, the idle-machine flag and load record, CPU seconds of a process tree, and the consumer settings
recorded as deployed (the config's window, not the Settings default). No figure is checked."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:  # bench/ is not an installed package: the benches run from the repository
    sys.path.insert(0, str(REPO))

from bench.common import (  # noqa: E402
    IDLE_LOAD_PER_CORE,
    LoadMonitor,
    Timing,
    git_provenance,
    machine_idle,
    side_order,
)
from bench.cputime import CpuClock, cpu_delta, tree_cpu_s  # noqa: E402


def test_alternate_order_puts_every_side_first_in_turn() -> None:
    sides = ["a", "b", "c"]
    orders = [side_order(sides, repeat) for repeat in range(3)]
    assert [order[0] for order in orders] == ["a", "b", "c"]
    assert all(sorted(order) == sides for order in orders)
    assert side_order(["x", "y"], 0) == ["x", "y"] and side_order(["x", "y"], 1) == ["y", "x"]


def test_shuffle_order_is_seeded_and_varies() -> None:
    sides = [f"s{i}" for i in range(6)]
    first = [side_order(sides, r, "shuffle") for r in range(8)]
    assert first == [side_order(sides, r, "shuffle") for r in range(8)]  # reproducible
    assert len({tuple(order) for order in first}) > 1
    assert all(sorted(order) == sorted(sides) for order in first)
    with pytest.raises(ValueError, match="order must be"):
        side_order(sides, 0, "fixed")


def test_machine_idle_threshold() -> None:
    assert machine_idle(IDLE_LOAD_PER_CORE * 4, cores=4)
    assert not machine_idle(IDLE_LOAD_PER_CORE * 4 + 0.01, cores=4)


def test_load_monitor_records_before_after_and_the_idle_flag() -> None:
    with LoadMonitor(interval_s=0.05) as load:
        pass
    summary = load.summary()
    assert len(summary["load_average_before"]) == 3 and len(summary["load_average_after"]) == 3
    idle = machine_idle(summary["load_average_before"][0], summary["cores"])
    assert summary["machine_idle_at_start"] is idle
    assert (summary["warning"] is None) is idle


def test_timing_summary_reports_the_spread() -> None:
    summary = Timing((10.0, 12.0, 14.0, 16.0, 30.0)).summary()
    assert summary["max_ms"] == 30.0 and summary["min_ms"] == 10.0
    assert summary["spread_pct"] == pytest.approx(100 * summary["iqr_ms"] / summary["median_ms"], abs=0.1)


def test_git_provenance_names_the_commit() -> None:
    found = git_provenance()
    head = subprocess.run(
        ["git", "rev-parse", "HEAD"], capture_output=True, text=True, cwd=Path(__file__).parent
    )
    assert found["git_commit_full"] == head.stdout.strip()
    assert isinstance(found["git_dirty"], bool)


def test_cpu_clock_counts_cpu_not_sleep() -> None:
    import time

    with CpuClock() as idle:
        time.sleep(0.2)
    with CpuClock() as busy:  # spin for 0.15 CPU-s (on a loaded machine that takes longer on the wall)
        start = time.thread_time()
        while time.thread_time() - start < 0.15:
            pass
    assert idle.wall_s >= 0.2 and idle.cpu_s < 0.1
    assert busy.cpu_s >= 0.15
    assert busy.wall_s >= 0.9 * busy.cpu_s  # one thread: no more CPU than wall time


def test_tree_cpu_s_sees_a_child_and_cpu_delta_sums_per_role() -> None:
    child = subprocess.Popen(
        [sys.executable, "-c", "import time\nt=time.time()\nwhile time.time()-t<0.6: pass"]
    )
    try:
        before = tree_cpu_s()
        assert child.pid in before
        child.wait(timeout=30)
    finally:
        child.kill()
    after = tree_cpu_s()
    spent = cpu_delta(before, {**after, child.pid: (before[child.pid][0], before[child.pid][1] + 0.5)})
    assert spent[before[child.pid][0]] >= 0.5
    assert "bench (this process)" in spent


def test_deployed_settings_read_the_configs_window(tmp_path: Path) -> None:
    """The issue's bug: a config giving the consumer a window of 24 was recorded as the default 8."""
    from bench.stack import deployed_settings, in_flight_of

    config = {
        "applications": [{"name": "posestream", "args": {"settings": {"in_flight": 24}}, "deployments": []}]
    }
    path = tmp_path / "serve_config.yaml"
    path.write_text(yaml.safe_dump(config))
    stack = SimpleNamespace(settings={"redis_url": "redis://127.0.0.1:1/0"})
    deployed = deployed_settings(path, stack)
    assert deployed["in_flight"] == 24 and deployed["config_settings"] == {"in_flight": 24}
    assert deployed["overrides"] == {}  # the Redis URL is not a setting of the run
    assert in_flight_of(stack, path) == 24
    overridden = SimpleNamespace(settings={"redis_url": "redis://x", "in_flight": 5})
    assert deployed_settings(path, overridden)["in_flight"] == 5
