"""A real live view for tests: the view's Starlette app under uvicorn on a free port in a thread."""

from __future__ import annotations

import json
import urllib.error
import urllib.request

from workers.client.connection import connect
from workers.view.server import ViewServer
from workers.view.web import LiveView, ViewOptions


class RunningView:
    """``with RunningView(url, settings, **ViewOptions) as view``: the view on a free port of localhost."""

    def __init__(self, redis_url: str, settings, **options):
        self.live = LiveView(connect(redis_url), settings, ViewOptions(**options))
        self._server = ViewServer(self.live)

    @property
    def url(self) -> str:
        return self._server.url.rstrip("/")

    def __enter__(self) -> RunningView:
        self._server.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.stop()

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
