"""The Grafana dashboard and the Prometheus alert rules query only series the workers export (posestream's
through Ray, with Ray's prefix and suffixes, and a few of Ray Serve's own), and the rules pass promtool."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from workers.serve.metrics import EXPORTED

ROOT = Path(__file__).resolve().parents[1]
DASHBOARD = ROOT / "deploy/grafana/posestream.json"
ALERTS = ROOT / "deploy/prometheus/alerts.yaml"
RAY_SERIES = {
    "ray_serve_deployment_replica_healthy"
}  # Ray Serve's own (ray/serve/_private/deployment_state.py)
SUFFIXES = {"counter": ("_total",), "gauge": ("",), "histogram": ("_bucket", "_sum", "_count")}
SERIES = re.compile(r"\bray_[a-z_]+\b")


def exported_series() -> set[str]:
    names = set(RAY_SERIES)
    for name, kind in EXPORTED.items():
        names.update(f"ray_{name}{suffix}" for suffix in SUFFIXES[kind])
    return names


def dashboard_expressions() -> list[str]:
    panels = json.loads(DASHBOARD.read_text())["panels"]
    return [target["expr"] for panel in panels for target in panel["targets"]]


def alert_expressions() -> list[str]:
    groups = yaml.safe_load(ALERTS.read_text())["groups"]
    return [rule["expr"] for group in groups for rule in group["rules"]]


@pytest.mark.parametrize("source", ["dashboard", "alerts"])
def test_every_queried_series_is_exported(source):
    expressions = dashboard_expressions() if source == "dashboard" else alert_expressions()
    queried = {name for expr in expressions for name in SERIES.findall(expr)}
    assert queried, "no series found: the expressions were not read"
    assert queried <= exported_series(), f"not exported: {sorted(queried - exported_series())}"


def test_the_check_catches_a_misspelt_series():
    assert "ray_posestream_frames_ok_total" in exported_series()
    assert "ray_posestream_frames_okay_total" not in exported_series()
    assert "ray_posestream_backlog_total" not in exported_series()  # a gauge has no _total


def test_dashboard_covers_what_operators_watch():
    text = " ".join(dashboard_expressions())
    for needed in (
        "stage_items_total",  # frames/s per stage
        "stage_latency_ms_bucket",  # latency quantiles
        "backlog",
        "frames_dead_total",
        "frames_stale_total",
        "serve_deployment_replica_healthy",
        "camera_frames_total",
    ):
        assert needed in text, needed


def test_alert_rules_pass_promtool():
    promtool = shutil.which("promtool")
    if promtool is None:
        from stream_helpers import skip_unless_available

        skip_unless_available("promtool (Debian's prometheus package, installed by .ci/run)")
    done = subprocess.run(
        [promtool, "check", "rules", str(ALERTS)], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "SUCCESS: 6 rules found" in done.stdout
