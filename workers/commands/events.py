"""``posestream events``: print PersonEvents (and, when asked, FrameResults, DeadLetters, ActivityChanges)."""

from __future__ import annotations

import base64
import json
import sys
from collections import deque
from typing import Any

import typer

TABLE_ROWS = 25


def message_json(message: Any) -> dict[str, Any]:
    """A wire message as a JSON-able dict with its ``kind``; bytes become base64 strings."""
    out: dict[str, Any] = {"kind": message.kind}
    for key, value in message.to_dict().items():
        out[key] = base64.b64encode(value).decode() if isinstance(value, bytes) else value
    return out


def _row(message: Any) -> tuple[str, ...]:
    kind = message.kind
    if kind == "person_event":
        top = f"{message.activity} {message.activity_scores.get(message.activity, 0.0):.2f}"
        box = "[" + ",".join(f"{v:.0f}" for v in message.bbox) + "]"
        track = (
            f"track {message.track_id} {message.activity_smoothed}  " if message.track_id is not None else ""
        )
        detail = f"person {message.person}  {track}{top}  score {message.score:.2f}  box {box}"
        latency = f"{message.latency_ms:.0f}"
    elif kind == "activity_change":
        detail = f"track {message.track_id}: {message.previous} → {message.activity} ({message.score:.2f})"
        latency = ""
    elif kind == "frame_result":
        detail = f"{message.status}  {message.persons} person(s)  {message.width}x{message.height}"
        latency = f"{message.latency_ms:.0f}"
    else:
        detail = f"DEAD {message.reason}: {message.error[:60]}"
        latency = ""
    return (kind, message.camera_id or "?", str(message.frame_id if message.frame_id is not None else "?"),
            detail, latency)  # fmt: skip


def _live_table(subscriber, follow: bool) -> int:
    from rich.console import Console
    from rich.live import Live
    from rich.table import Table

    rows: deque[tuple[str, ...]] = deque(maxlen=TABLE_ROWS)
    count = 0

    def render() -> Table:
        table = Table(title=f"posestream events ({count} received)", expand=True)
        for name, justify in (("kind", "left"), ("camera", "left"), ("frame", "right"), ("", "left"),
                              ("latency ms", "right")):  # fmt: skip
            table.add_column(name, justify=justify)
        for row in rows:
            table.add_row(*row)
        return table

    with Live(render(), console=Console(), refresh_per_second=4) as live:
        for message in subscriber.messages(follow=follow):
            count += 1
            rows.append(_row(message))
            live.update(render())
    return count


def _json_lines(subscriber, follow: bool) -> int:
    count = 0
    for message in subscriber.messages(follow=follow):
        sys.stdout.write(json.dumps(message_json(message), separators=(",", ":")) + "\n")
        sys.stdout.flush()
        count += 1
    return count


def _have_rich() -> bool:
    try:
        import rich  # noqa: F401  (typer installs it; typer-slim does not)
    except ImportError:
        return False
    return True


def register(app: typer.Typer) -> None:
    @app.command("events")
    def events(
        follow: bool = typer.Option(False, "--follow", "-f", help="Keep reading as events arrive."),
        camera_id: list[str] = typer.Option([], "--camera-id", help="Only these cameras (repeatable)."),
        as_json: bool = typer.Option(False, "--json", help="JSON lines (the default when not a terminal)."),
        start: str | None = typer.Option(
            None,
            "--from",
            help="'0' (all retained), '$' (new only) or an entry id. Default: '$' with --follow, else '0'.",
        ),
        results: bool = typer.Option(False, "--results", help="Also FrameResults (one per frame)."),
        dead: bool = typer.Option(False, "--dead", help="Also DeadLetters."),
        changes: bool = typer.Option(
            False, "--changes", help="Also ActivityChanges (a track's smoothed activity changed)."
        ),
        only_changes: bool = typer.Option(False, "--only-changes", help="ActivityChanges only."),
        group: str | None = typer.Option(None, help="Read through this consumer group (XREADGROUP + XACK)."),
        redis_url: str | None = typer.Option(None, envvar="POSESTREAM_REDIS_URL", help="Redis URL."),
    ) -> None:
        """Print person events as JSON lines, or as a live table on a terminal."""
        from workers.client import EventSubscriber

        kinds = ["events"] + (["results"] if results else []) + (["dead"] if dead else [])
        kinds += ["changes"] if changes else []
        if only_changes:
            kinds = ["changes"]
        subscriber = EventSubscriber(
            redis_url,
            kinds=kinds,
            start=start or ("$" if follow else "0"),
            group=group,
            camera_ids=camera_id or None,
        )
        try:
            if as_json or not sys.stdout.isatty() or not _have_rich():
                _json_lines(subscriber, follow)
            else:
                count = _live_table(subscriber, follow)
                typer.echo(f"{count} message(s)", err=True)
        except KeyboardInterrupt:
            pass
        finally:
            subscriber.close()
