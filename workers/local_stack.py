"""The whole of posestream on one machine: embedded Redis, a local Ray, and the Serve app from the config.

``local_stack()`` is a context manager shared by ``posestream demo`` (and meant for ``posestream serve``):
it starts what is not given, deploys ``deploy/serve_config.yaml`` exactly as ``serve deploy`` would (with
the Redis URL and any settings overrides put into the app's ``args.settings``), and tears everything down
in reverse order, also on errors and Ctrl-C.
"""

from __future__ import annotations

import contextlib
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import structlog

log = structlog.get_logger()

OBJECT_STORE_BYTES = 200 * 1024 * 1024  # the stages pass boxes and peaks, never big tensors


@dataclass
class LocalStack:
    redis_url: str
    settings: dict[str, Any] = field(default_factory=dict)  # what the app's consumers were given
    app_names: list[str] = field(default_factory=list)


def _with_overrides(schema: Any, settings: dict[str, Any], user_config: dict[str, Any]) -> Any:
    """The deploy schema with ``settings`` merged into every app's args and ``user_config`` into every
    deployment that has one (e.g. a checkpoint path)."""
    apps = []
    for app in schema.applications:
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


@contextlib.contextmanager
def local_stack(
    *,
    redis_url: str | None = None,
    redis_dir: str | Path | None = None,
    config_path: str | Path | None = None,
    settings: dict[str, Any] | None = None,
    user_config: dict[str, Any] | None = None,
    num_cpus: int | None = None,
    log_to_driver: bool = False,
    deploy_timeout_s: float = 600.0,
) -> Iterator[LocalStack]:
    """Start embedded Redis (unless ``redis_url``), Ray and Serve (proxy disabled) and deploy the app.

    ``redis_dir``: the embedded server's data dir (default: a fresh temporary dir, removed at the end).
    """
    import ray
    from ray import serve

    from workers.redis_server import RedisServer
    from workers.serve.app import DEFAULT_CONFIG, deploy_config_file, load_deploy_config

    schema = load_deploy_config(config_path or DEFAULT_CONFIG)
    with contextlib.ExitStack() as stack:
        if redis_url is None:
            data_dir = redis_dir or stack.enter_context(
                tempfile.TemporaryDirectory(prefix="posestream-redis-")
            )
            server = stack.enter_context(RedisServer(data_dir))
            redis_url = server.url
        overrides = {**(settings or {}), "redis_url": redis_url}
        schema = _with_overrides(schema, overrides, user_config or {})

        if not ray.is_initialized():
            ray.init(
                num_cpus=num_cpus,
                include_dashboard=False,
                object_store_memory=OBJECT_STORE_BYTES,
                log_to_driver=log_to_driver,
                # Replicas read settings from args, not from the driver's environment.
            )
            stack.callback(ray.shutdown)
        serve.start(proxy_location="Disabled")
        stack.callback(serve.shutdown)
        names = [app.name for app in schema.applications]
        log.info("serve_deploying", apps=names, redis_url=redis_url)
        deploy_config_file(schema, timeout_s=deploy_timeout_s)
        log.info("serve_running", apps=names)
        yield LocalStack(redis_url=redis_url, settings=overrides, app_names=names)
