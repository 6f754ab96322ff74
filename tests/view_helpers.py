"""A real live view for tests: a worker (StreamConsumer + a scripted pipeline) fills Redis, and the view's
Starlette app runs under uvicorn on a free port in a thread."""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import time
import urllib.error
import urllib.request

import uvicorn
from stream_helpers import run_scenario, wait_until

from workers.client.connection import connect
from workers.streams import StreamConsumer
from workers.streams import connect as connect_async
from workers.view.web import LiveView, ViewOptions


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def run_worker(redis_url, sync_redis, settings, pipeline, expected_results: int) -> dict:
    """Run a consumer until ``expected_results`` results are out over all shards; its final stats."""

    async def scenario() -> dict:
        client = connect_async(redis_url, settings)
        consumer = StreamConsumer(client, pipeline, settings, name="view-worker")
        task = asyncio.create_task(consumer.run())
        done = lambda: sum(sync_redis.xlen(k.results) for k in settings.all_shard_keys()) >= expected_results  # noqa: E731
        await wait_until(lambda: done() or task.done(), 60, "results")
        await asyncio.sleep(0.3)  # previews are written just after the publish
        consumer.stop()
        await task
        stats = consumer.stats()
        await client.aclose()
        return stats

    return run_scenario(scenario())


class RunningView:
    def __init__(self, redis_url: str, settings, **options):
        self.live = LiveView(connect(redis_url), settings, ViewOptions(**options))
        self.port = free_port()
        config = uvicorn.Config(self.live.app(), host="127.0.0.1", port=self.port, log_level="warning")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, name="view-server", daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> RunningView:
        self.thread.start()
        deadline = time.monotonic() + 20
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("the view did not start")
            time.sleep(0.05)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)

    def get(self, path: str, headers: dict[str, str] | None = None) -> tuple[int, bytes, str]:
        request = urllib.request.Request(self.url + path, headers=headers or {})
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                return response.status, response.read(), response.headers.get("content-type", "")
        except urllib.error.HTTPError as error:
            return error.code, error.read(), error.headers.get("content-type", "")

    def state(self, token: str | None = None) -> dict:
        status, body, _ = self.get("/api/state" + (f"?token={token}" if token else ""))
        if status != 200:
            raise AssertionError(f"/api/state answered {status}: {body[:200]!r}")
        return json.loads(body)
