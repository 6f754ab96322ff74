"""The live view's web app (Starlette): one page, its JSON, and a JPEG / MJPEG tile per camera.

Reads only: the output streams from its own position (a subscriber thread, no consumer group, so it takes
nothing from anyone) and the per-camera preview keys. With a token set, every route but ``/healthz``
wants ``?token=`` or ``Authorization: Bearer``; the page passes its own URL's token along.
"""

from __future__ import annotations

import asyncio
import secrets
import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import redis
import structlog
from pydantic import TypeAdapter, ValidationError
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.middleware import Middleware
from starlette.middleware.base import BaseHTTPMiddleware
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from schemas.settings import Settings
from schemas.wire import CameraId
from workers.view.live_state import LiveState
from workers.view.tiles import draw_tile, preview_cameras, read_preview, stage_latency_ms

log = structlog.get_logger()
PAGE = (Path(__file__).parent / "page.html").read_text()
_CAMERA_ID = TypeAdapter(CameraId)
BOUNDARY = "posestream-frame"


@dataclass(frozen=True)
class ViewOptions:
    token: str | None = None
    metrics_url: str | None = None  # the worker's Prometheus endpoint, for per-stage latency
    tile_fps: float = 4.0  # at most this many MJPEG parts a second per tile
    start: str = "$"  # where the view's subscriber starts ("$": from now; "0": all retained)


class LiveView:
    """The state, the subscriber thread that feeds it and the Starlette app that shows it."""

    def __init__(self, client: redis.Redis, settings: Settings, options: ViewOptions):
        self.client = client
        self.settings = settings
        self.options = options
        self.state = LiveState()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        from workers.client import EventSubscriber

        self.state.add_cameras(preview_cameras(self.client, self.settings))
        subscriber = EventSubscriber(
            settings=self.settings, client=self.client, kinds=("events", "results", "dead", "changes"),
            start=self.options.start, block_ms=200,
        )  # fmt: skip

        def feed() -> None:
            for message in subscriber.messages(follow=True, stop=self._stop):
                self.state.add(message)

        self._thread = threading.Thread(target=feed, name="view-subscriber", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def tile(self, camera_id: str) -> tuple[tuple[int, int], bytes] | None:
        """((frame_id, persons drawn), annotated JPEG) of the camera's preview, None when it has none.
        The key changes when a new preview comes or when the events of the shown one arrive."""
        preview = read_preview(self.client, self.settings, camera_id)
        if preview is None:
            return None
        self.state.add_cameras([preview.camera_id])
        events = self.state.events_of(camera_id, preview.frame_id)
        drawn = len(events) if events is not None else -1
        return (preview.frame_id, drawn), draw_tile(preview, events)

    def app(self) -> Starlette:
        @asynccontextmanager
        async def lifespan(_app: Starlette) -> AsyncIterator[None]:
            self.start()
            try:
                yield
            finally:
                self.stop()

        routes = [
            Route("/", self._page),
            Route("/healthz", self._health),
            Route("/api/state", self._state),
            Route("/camera/{camera_id}.jpg", self._jpeg),
            Route("/camera/{camera_id}/mjpeg", self._mjpeg),
        ]
        return Starlette(
            routes=routes,
            lifespan=lifespan,
            middleware=[Middleware(BaseHTTPMiddleware, dispatch=self._guard)],
        )

    async def _guard(self, request: Request, call_next):
        token = self.options.token
        if token and request.url.path != "/healthz":
            given = request.query_params.get("token") or ""
            header = request.headers.get("authorization", "")
            if header.lower().startswith("bearer "):
                given = header[7:]
            if not secrets.compare_digest(given.encode(), token.encode()):
                return JSONResponse({"error": "a valid token is required"}, status_code=401)
        return await call_next(request)

    async def _page(self, _request: Request) -> Response:
        return HTMLResponse(PAGE)

    async def _health(self, _request: Request) -> Response:
        return JSONResponse({"ok": True})

    async def _state(self, _request: Request) -> Response:
        data = self.state.snapshot()
        if self.options.metrics_url:
            data["stage_latency_ms"] = await run_in_threadpool(stage_latency_ms, self.options.metrics_url)
        return JSONResponse(data)

    @staticmethod
    def _camera(request: Request) -> str | None:
        try:
            return _CAMERA_ID.validate_python(request.path_params["camera_id"])
        except ValidationError:
            return None

    async def _jpeg(self, request: Request) -> Response:
        camera_id = self._camera(request)
        tile = await run_in_threadpool(self.tile, camera_id) if camera_id else None
        if tile is None:
            return JSONResponse({"error": "no preview for this camera"}, status_code=404)
        return Response(tile[1], media_type="image/jpeg", headers={"Cache-Control": "no-store"})

    async def _mjpeg(self, request: Request) -> Response:
        camera_id = self._camera(request)
        if camera_id is None:
            return JSONResponse({"error": "not a camera id"}, status_code=404)
        interval = 1.0 / self.options.tile_fps

        async def parts() -> AsyncIterator[bytes]:
            shown: tuple[int, int] | None = None
            while not await request.is_disconnected():
                tile = await run_in_threadpool(self.tile, camera_id)
                if tile is not None and tile[0] != shown:
                    shown = tile[0]
                    head = (
                        f"--{BOUNDARY}\r\nContent-Type: image/jpeg\r\nContent-Length: {len(tile[1])}\r\n\r\n"
                    )
                    yield head.encode() + tile[1] + b"\r\n"
                await asyncio.sleep(interval)

        return StreamingResponse(parts(), media_type=f"multipart/x-mixed-replace; boundary={BOUNDARY}")
