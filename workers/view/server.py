"""ViewServer: the live view's app under uvicorn in a background thread (the demo, tests); the foreground
command (``posestream view``) runs uvicorn itself."""

from __future__ import annotations

import socket
import threading
import time

import uvicorn

from workers.view.web import LiveView

START_TIMEOUT_S = 15.0


def _port_or_free(host: str, port: int) -> int:
    with socket.socket() as probe:
        try:
            probe.bind((host, port))
        except OSError:
            probe.bind((host, 0))
        return probe.getsockname()[1]


class ViewServer:
    """``port`` 0: any free port; ``fallback_to_free_port``: any free port when ``port`` is taken."""

    def __init__(
        self, live: LiveView, host: str = "127.0.0.1", port: int = 0, fallback_to_free_port: bool = False
    ):
        self.live = live
        self.host = host
        self.port = _port_or_free(host, port) if fallback_to_free_port or port == 0 else port
        config = uvicorn.Config(live.app(), host=host, port=self.port, log_level="warning")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, name="view-server", daemon=True)

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}/"

    def start(self) -> ViewServer:
        """Serve in the background; returns once it listens (RuntimeError if it does not)."""
        self.thread.start()
        deadline = time.monotonic() + START_TIMEOUT_S
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                self.stop()
                raise RuntimeError(f"the live view did not start on {self.host}:{self.port}")
            time.sleep(0.05)
        return self

    def stop(self) -> None:
        self.server.should_exit = True
        if self.thread.is_alive():
            self.thread.join(timeout=10)

    def __enter__(self) -> ViewServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
