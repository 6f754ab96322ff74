"""A real live view for tests: the view's Starlette app under uvicorn on a free port in a thread."""

from __future__ import annotations

import json
import socket
import threading
import time
import urllib.error
import urllib.request

import uvicorn

from workers.client.connection import connect
from workers.view.web import LiveView, ViewOptions


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


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
