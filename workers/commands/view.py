"""``posestream view``: serve the live view (camera tiles, activities, changes, dead letters)."""

from __future__ import annotations

import typer

LOCALHOST = "127.0.0.1"


def register(app: typer.Typer) -> None:
    @app.command("view")
    def view(
        redis_url: str | None = typer.Option(
            None, "--redis-url", envvar="POSESTREAM_REDIS_URL", help="The Redis the workers publish to."
        ),
        host: str = typer.Option(LOCALHOST, help="Address to bind (localhost unless told otherwise)."),
        port: int = typer.Option(8080, help="Port to bind (0: any free port)."),
        token: str | None = typer.Option(
            None, envvar="POSESTREAM_VIEW_TOKEN", help="Access token the page and its API require."
        ),
        metrics_url: str | None = typer.Option(
            None,
            help="The worker's Prometheus endpoint (e.g. http://127.0.0.1:8081/metrics) for stage latency.",
        ),
        start: str = typer.Option("$", "--from", help="'$': from now on; '0': everything retained."),
    ) -> None:
        """Serve the live view until Ctrl-C. Reads the output streams and the workers' previews only."""
        import structlog

        from schemas.settings import Settings
        from workers.client.connection import connect

        settings = Settings()
        url = redis_url or settings.redis_url
        if not url:
            raise typer.BadParameter("a Redis URL is needed (--redis-url or POSESTREAM_REDIS_URL)")
        if host != LOCALHOST and not token:
            structlog.get_logger().warning("view_exposed_without_token", host=host)
        client = connect(url, cluster=settings.redis_cluster)
        serve_view(client, settings, host, port, token=token, metrics_url=metrics_url, start=start)


def serve_view(client, settings, host: str, port: int, **options) -> None:
    import uvicorn

    from workers.view.web import LiveView, ViewOptions

    live = LiveView(client, settings, ViewOptions(**options))
    uvicorn.run(live.app(), host=host, port=port, log_level="warning")
