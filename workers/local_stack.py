"""The whole of posestream on one machine: embedded Redis, a local Ray, and the Serve app from the config.

``local_stack()`` is the one start-up and tear-down path of ``posestream serve``, ``posestream demo`` and
the benchmarks: it starts what is not given, deploys ``deploy/serve_config.yaml`` exactly as ``serve
deploy`` would (with any settings overrides put into the app's ``args.settings``, and the Redis URL in a
private file named there by ``redis_url_file``: the URL may hold a password, and Serve's args are shown by
``serve status`` and the dashboard — docs/SECURITY.md), and
tears everything down in reverse order, also on errors and Ctrl-C. Tear-down drains first: every consumer
replica stops reading and publishes the frames in flight while the model stages still answer; then the
apps are deleted and Serve, Ray (when started here) and the embedded Redis stop.
"""

from __future__ import annotations

import contextlib
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import structlog

from workers.redacting import redact_url

log = structlog.get_logger()

OUR_APP = "workers.serve.app:build_app"
OBJECT_STORE_BYTES = 200 * 1024 * 1024  # the stages pass boxes and peaks, never big tensors
DRAIN_TIMEOUT_S = 120.0


@dataclass
class LocalStack:
    redis_url: str
    settings: dict[str, Any] = field(default_factory=dict)  # what the app's consumers were given
    app_names: list[str] = field(default_factory=list)
    metrics_endpoint: str | None = None  # this node's Prometheus endpoint


def _with_overrides(schema: Any, settings: dict[str, Any], user_config: dict[str, Any]) -> Any:
    """The deploy schema with ``settings`` merged into the args of every posestream app and
    ``user_config`` into every deployment of it that has one (e.g. a checkpoint path)."""
    apps = []
    for app in schema.applications:
        if app.import_path != OUR_APP:
            apps.append(app)
            continue
        args = dict(app.args or {})
        args["settings"] = {**dict(args.get("settings") or {}), **settings}
        deployments = []
        for deployment in app.deployments:
            current = deployment.user_config if isinstance(deployment.user_config, dict) else None
            if user_config and current is not None:
                deployment = deployment.model_copy(update={"user_config": {**current, **user_config}})
            deployments.append(deployment)
        apps.append(app.model_copy(update={"args": args, "deployments": deployments}))
    return schema.model_copy(update={"applications": apps})


def metrics_endpoint() -> str | None:
    """The Prometheus endpoint of this Ray node (``ray_posestream_*`` metrics appear there)."""
    import ray

    for node in ray.nodes():
        if node.get("Alive") and node.get("MetricsExportPort"):
            return f"http://{node['NodeManagerAddress']}:{node['MetricsExportPort']}/metrics"
    return None


def drain_consumers(app_name: str, timeout_s: float = DRAIN_TIMEOUT_S) -> dict[str, Any]:
    """Drain every FrameConsumer replica of ``app_name``; returns the summed integer counters.

    A handle call reaches one replica, so drain calls are sent concurrently (a draining replica is busy,
    the router prefers the others) until every running replica has answered once."""
    from ray import serve

    status = serve.status().applications.get(app_name)
    if status is None or "FrameConsumer" not in status.deployments:
        return {}
    replicas = max(1, sum(status.deployments["FrameConsumer"].replica_states.values()))
    handle = serve.get_deployment_handle("FrameConsumer", app_name=app_name)
    drained: dict[str, dict[str, Any]] = {}
    deadline = time.monotonic() + timeout_s
    while len(drained) < replicas and time.monotonic() < deadline:
        calls = [handle.drain.remote() for _ in range(replicas - len(drained))]
        for call in calls:
            try:
                stats = call.result(timeout_s=max(1.0, deadline - time.monotonic()))
            except Exception as error:  # noqa: BLE001 - a replica gone already has nothing to drain
                log.warning("drain_failed", app=app_name, error=repr(error))
                replicas -= 1
                continue
            drained[str(stats.get("consumer", len(drained)))] = stats
    totals: dict[str, Any] = {}
    for stats in drained.values():
        for key, value in stats.items():
            if isinstance(value, int) and not isinstance(value, bool):
                totals[key] = totals.get(key, 0) + value
    return totals


@contextlib.contextmanager
def local_stack(
    *,
    redis_url: str | None = None,
    redis_dir: str | Path | None = None,
    config_path: str | Path | None = None,
    settings: dict[str, Any] | None = None,
    user_config: dict[str, Any] | None = None,
    num_cpus: int | None = None,
    num_gpus: int | None = None,
    object_store_bytes: int = OBJECT_STORE_BYTES,
    metrics_port: int | None = None,
    log_to_driver: bool = False,
    deploy_timeout_s: float = 600.0,
) -> Iterator[LocalStack]:
    """Start embedded Redis (unless ``redis_url``), Ray (unless running) and Serve (proxy disabled), deploy
    the app, and on exit drain the consumers and stop everything started here.

    ``redis_dir``: the embedded server's data dir (default: a fresh temporary dir, removed at the end).
    ``metrics_port``: the node's Prometheus port (default: chosen by Ray; see ``LocalStack``).
    """
    import ray
    from ray import serve

    from schemas.settings import Settings
    from workers.redis_server import RedisServer, frame_bulk_limit
    from workers.serve.app import DEFAULT_CONFIG, deploy_config_file, load_deploy_config

    schema = load_deploy_config(config_path or DEFAULT_CONFIG)
    with contextlib.ExitStack() as stack:
        if redis_url is None:
            data_dir = redis_dir or stack.enter_context(
                tempfile.TemporaryDirectory(prefix="posestream-redis-")
            )
            payload_limit = Settings(**(settings or {})).max_payload_bytes
            bulk_limit = frame_bulk_limit(payload_limit)
            server = stack.enter_context(RedisServer(data_dir, max_bulk_bytes=bulk_limit))
            redis_url = server.url
        overrides = {**(settings or {}), "redis_url": redis_url}
        # The replicas read the URL from a file only this user may read; redis_url None in the args
        # outranks a POSESTREAM_REDIS_URL the replicas may inherit, so the file is what counts.
        url_file = write_secret_file(stack, redis_url)
        app_settings = {**(settings or {}), "redis_url": None, "redis_url_file": str(url_file)}
        schema = _with_overrides(schema, app_settings, user_config or {})

        if not ray.is_initialized():
            init_args: dict[str, Any] = dict(
                num_cpus=num_cpus,
                num_gpus=num_gpus,
                include_dashboard=False,
                object_store_memory=object_store_bytes,
                log_to_driver=log_to_driver,
                # Replicas read settings from args, not from the driver's environment.
            )
            if metrics_port is not None:
                init_args["_metrics_export_port"] = metrics_port
            ray.init(**init_args)
            stack.callback(ray.shutdown)
        serve.start(proxy_location="Disabled")
        stack.callback(serve.shutdown)
        names = [app.name for app in schema.applications]
        ours = [app.name for app in schema.applications if app.import_path == OUR_APP]
        stack.callback(_stop_apps, names, ours)
        log.info("serve_deploying", apps=names, redis_url=redact_url(redis_url))
        deploy_config_file(schema, timeout_s=deploy_timeout_s)
        log.info("serve_running", apps=names)
        yield LocalStack(
            redis_url=redis_url, settings=overrides, app_names=names, metrics_endpoint=metrics_endpoint()
        )


def write_secret_file(stack: contextlib.ExitStack, url: str) -> Path:
    """``url`` in a new file readable by this user only (in a 0700 temporary dir, removed on exit)."""
    folder = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="posestream-secret-")))
    path = folder / "redis_url"
    path.touch(mode=0o600)
    path.write_text(url)
    return path


def _stop_apps(names: list[str], ours: list[str]) -> None:
    """Drain our consumers (the model stages still answer), then delete every app."""
    from ray import serve

    for name in ours:
        log.info("draining", app=name, hint="finishing the frames in flight")
        try:
            log.info("drained", app=name, **drain_consumers(name))
        except Exception as error:  # noqa: BLE001 - tear-down goes on; unfinished frames stay pending
            log.warning("drain_failed", app=name, error=repr(error))
    for name in names:
        with contextlib.suppress(Exception):
            serve.delete(name, _blocking=True)
