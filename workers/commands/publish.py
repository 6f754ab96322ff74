"""``posestream publish``: send images, folders, video files or live captures to posestream as cameras."""

from __future__ import annotations

import sys
import threading
import time
from pathlib import Path

import typer


def _camera_ids(sources: list[str], given: list[str]) -> list[str]:
    from workers.client.sources import camera_id_for

    if not given:
        ids = [camera_id_for(spec) for spec in sources]
    elif len(given) == len(sources):
        ids = list(given)
    else:
        raise typer.BadParameter(
            f"{len(given)} --camera-id for {len(sources)} sources: give one per source, or none to name "
            "cameras after their files",
            param_hint="--camera-id",
        )
    from pydantic import TypeAdapter, ValidationError

    from schemas.wire import CameraId

    for cam in ids:
        try:
            TypeAdapter(CameraId).validate_python(cam)
        except ValidationError as exc:
            raise typer.BadParameter(
                f"{cam!r}: 1-128 chars of [A-Za-z0-9._:-]", param_hint="--camera-id"
            ) from exc
    if len(set(ids)) != len(ids):
        raise typer.BadParameter(f"camera ids must differ: {ids}", param_hint="--camera-id")
    return ids


class _Progress:
    """One line on stderr: frames, fps, backlog (redrawn in place on a terminal)."""

    def __init__(self, publisher, interval_s: float = 0.5) -> None:
        self.publisher = publisher
        self.tty = sys.stderr.isatty()
        self.interval_s = interval_s if self.tty else 5.0
        self.started = time.monotonic()

    def line(self) -> str:
        counts = self.publisher.counts
        elapsed = max(time.monotonic() - self.started, 1e-6)
        try:
            backlog = str(self.publisher.total_backlog())
        except Exception:  # Redis away for a moment: the line still shows what was sent
            backlog = "?"
        return (
            f"frames {counts['published']}  fps {counts['published'] / elapsed:.1f}  backlog {backlog}  "
            f"dropped {counts['dropped']}"
        )

    def show(self, final: bool = False) -> None:
        if self.tty:
            sys.stderr.write("\r" + self.line().ljust(70) + ("\n" if final else ""))
        else:
            sys.stderr.write(self.line() + "\n")
        sys.stderr.flush()


def source_max_age(kind: str, live_max_age_s: float) -> float | None:
    """The ``max_age_s`` a source's frames carry: the live bound for live sources (a camera's picture moves
    on), none for files and folders (``FrameSource.kind``) or when the bound is 0."""
    return live_max_age_s if kind == "live" and live_max_age_s > 0 else None


def run_publish(
    sources: list[str],
    camera_ids: list[str],
    *,
    fps: float | None,
    loop: bool,
    redis_url: str | None,
    policy: str,
    max_backlog: int,
    max_frames: int | None,
    wait_timeout_s: float,
    live_max_age_s: float = 0.0,
) -> dict[str, int]:
    """Publish every source from its own thread until all end; returns the publisher's counts.

    Frames of live sources (webcams, capture URLs) carry ``max_age_s = live_max_age_s`` (0: none): once a
    frame is older than that the worker answers it ``stale`` instead of queueing it. Files and folders
    never carry it: their frames are worth running however late."""
    from workers.client import FramePublisher, FrameSource
    from workers.redacting import redact_url

    frame_sources = [FrameSource(spec, fps=fps, loop=loop, max_frames=max_frames) for spec in sources]
    publisher = FramePublisher(
        redis_url, policy=policy, max_backlog=max_backlog, wait_timeout_s=wait_timeout_s
    )
    stop = threading.Event()
    errors: list[str] = []

    def pump(source: FrameSource, camera_id: str) -> None:
        try:
            # a capture URL's password must not ride along on the wire (meta reaches every subscriber)
            name = Path(redact_url(source.spec)).name[:120]
            max_age_s = source_max_age(source.kind, live_max_age_s)
            for index, frame, ts in source.indexed():
                if stop.is_set():
                    return
                # frame_index joins results back to the source's frames (``posestream annotate``)
                meta = {"source": name, "frame_index": index}
                publisher.publish(frame, camera_id, ts=ts, meta=meta, max_age_s=max_age_s)
        except Exception as exc:  # reported once all threads end; the others go on
            errors.append(f"{camera_id}: {type(exc).__name__}: {exc}")

    threads = [
        threading.Thread(target=pump, args=(src, cam), name=f"publish-{cam}", daemon=True)
        for src, cam in zip(frame_sources, camera_ids, strict=True)
    ]
    progress = _Progress(publisher)
    for thread in threads:
        thread.start()
    try:
        last_shown = time.monotonic()
        while any(thread.is_alive() for thread in threads):
            for thread in threads:
                thread.join(timeout=0.1)
            if time.monotonic() - last_shown >= progress.interval_s:
                progress.show()
                last_shown = time.monotonic()
    except KeyboardInterrupt:
        stop.set()
    progress.show(final=True)
    publisher.close()
    for error in errors:
        typer.echo(f"error: {error}", err=True)
    if errors:
        raise typer.Exit(1)
    return dict(publisher.counts)


def register(app: typer.Typer) -> None:
    @app.command("publish")
    def publish(
        sources: list[str] = typer.Argument(
            ...,
            help="Image files, image folders, video files, capture URLs (rtsp://…) or webcam indexes.",
        ),
        camera_id: list[str] = typer.Option(
            [], "--camera-id", help="One per source, in order (default: named after each source)."
        ),
        fps: float | None = typer.Option(
            None, help="Frames per second per camera (default: a video's own rate, images unpaced)."
        ),
        loop: bool = typer.Option(False, help="Start files and folders again at their end."),
        redis_url: str | None = typer.Option(None, envvar="POSESTREAM_REDIS_URL", help="Redis URL."),
        policy: str = typer.Option("wait", help="Backlog over --max-backlog: 'wait' for it, or 'drop'."),
        max_backlog: int = typer.Option(256, min=1, help="Frames queued per shard before backpressure."),
        max_frames: int | None = typer.Option(None, min=1, help="Stop each source after this many."),
        wait_timeout: float = typer.Option(60.0, help="Policy wait: give up after this many seconds."),
        max_age: float | None = typer.Option(
            None,
            "--max-age",
            min=0,
            help="Seconds a live source's frame (webcam, capture URL) may wait before the worker answers "
            "it stale (default POSESTREAM_LIVE_MAX_AGE_S, 2; 0: never). Files and folders never expire.",
        ),
    ) -> None:
        """Publish frames to posestream, one camera per source, each from its own thread."""
        from workers.client import SourceError

        if policy not in ("wait", "drop"):
            raise typer.BadParameter("must be 'wait' or 'drop'", param_hint="--policy")
        ids = _camera_ids(sources, camera_id)
        if max_age is None:
            from schemas.settings import Settings

            max_age = Settings().live_max_age_s
        try:
            run_publish(
                sources,
                ids,
                fps=fps,
                loop=loop,
                redis_url=redis_url,
                policy=policy,
                max_backlog=max_backlog,
                max_frames=max_frames,
                wait_timeout_s=wait_timeout,
                live_max_age_s=max_age,
            )
        except SourceError as exc:
            typer.echo(f"error: {exc}", err=True)
            raise typer.Exit(2) from exc
