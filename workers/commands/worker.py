"""``posestream worker``: one stream consumer in one process, no Ray — the model in this process.

The same ``StreamConsumer`` (leases, fence, windows, stale policy, dead letters) as the Serve consumer,
with ``LocalPipeline`` (the very ``PosePipeline`` of ``posestream infer``) instead of the stage
deployments: for a single edge box, or several such processes sharing the shards of one Redis. SIGTERM or
Ctrl-C drains (no more reads, the frames in flight published, leases released) and prints the consumer's
final stats as one JSON line; SIGKILL is a crash the next owner of the shards recovers from.
"""

from __future__ import annotations

import asyncio
import json
import signal
import threading
from pathlib import Path

import structlog
import typer

log = structlog.get_logger()


def register(app: typer.Typer) -> None:
    @app.command("worker")
    def worker_command(
        redis_url: str | None = typer.Option(
            None, "--redis-url", envvar="POSESTREAM_REDIS_URL", help="Redis to consume from (required)."
        ),
        checkpoint: Path | None = typer.Option(
            None,
            "--checkpoint",
            envvar="POSESTREAM_CHECKPOINT",
            help="Model checkpoint (default: the packaged demo).",
        ),
        device: str | None = typer.Option(
            None, "--device", envvar="POSESTREAM_DEVICE", help="cpu or cuda (default: cuda when available)."
        ),
        name: str | None = typer.Option(None, "--name", help="Consumer name (default: host-pid-random)."),
    ) -> None:
        """Consume frames from Redis with the model in this process (no Ray) until SIGTERM/Ctrl-C."""
        from schemas.settings import Settings

        settings = Settings()
        url = redis_url or settings.redis_url
        if not url:
            raise typer.BadParameter("a Redis URL is needed (--redis-url or POSESTREAM_REDIS_URL)")
        # A stop asked for while the model loads is a stop, not a crash: the consumer starts stopped.
        stop_early = threading.Event()
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, lambda *_: stop_early.set())
        from redis.exceptions import AuthenticationError

        try:
            stats = asyncio.run(_consume(url, settings, checkpoint, device, name, stop_early))
        except AuthenticationError as exc:  # never retried: a wrong password does not heal
            typer.echo(f"error: Redis refused the credentials ({exc})", err=True)
            raise typer.Exit(3) from None
        typer.echo(json.dumps(stats, sort_keys=True, default=str))


async def _consume(
    url: str,
    settings,
    checkpoint: Path | None,
    device: str | None,
    name: str | None,
    stop_early: threading.Event,
) -> dict:
    from workers.pipeline import LocalPipeline
    from workers.streams import StreamConsumer, connect

    pipeline = await asyncio.to_thread(LocalPipeline.load, str(checkpoint) if checkpoint else None, device)
    client = connect(url, settings)
    consumer = StreamConsumer(client, pipeline, settings, name=name)
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, consumer.stop)  # graceful: drain, publish, release
    if stop_early.is_set():
        consumer.stop()
    log.info(
        "worker_started", consumer=consumer.name, model_version=pipeline.model_version, shards=settings.shards
    )
    try:
        await consumer.run()
    finally:
        await client.aclose()
    return consumer.stats()
