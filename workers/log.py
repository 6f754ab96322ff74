"""structlog set up once for every posestream process.

JSON lines when stderr is not a terminal (containers, Ray workers, CI), a readable
console renderer on a terminal. ``camera_id``/``frame_id`` are bound by callers through
``structlog.contextvars.bound_contextvars`` so every line about a frame carries them.
"""

from __future__ import annotations

import logging
import os
import sys

import structlog

from workers.redacting import redact_text

_configured = False


class _CurrentStderr:
    """Writes to whatever ``sys.stderr`` is now (test runners swap it), not the one at setup."""

    def write(self, text: str) -> int:
        return sys.stderr.write(text)

    def flush(self) -> None:
        sys.stderr.flush()


def _redacted(value: object) -> object:
    if isinstance(value, str):
        return redact_text(value)
    if isinstance(value, dict):
        return {key: _redacted(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_redacted(item) for item in value]
    return value


def redact_secrets(_logger: object, _method: str, event_dict: dict) -> dict:
    """Mask passwords in any URL a log line carries (callers redact too; this catches what they miss,
    e.g. a URL inside an exception's text)."""
    return {key: _redacted(value) for key, value in event_dict.items()}


def configure_logging(level: str | None = None, json: bool | None = None) -> None:
    """Configure structlog and the stdlib root logger; later calls are no-ops."""
    global _configured
    if _configured:
        return
    level_name = (level or os.environ.get("POSESTREAM_LOG_LEVEL", "INFO")).upper()
    numeric = logging.getLevelName(level_name)
    if not isinstance(numeric, int):
        numeric = logging.INFO
    if json is None:
        json = not sys.stderr.isatty()
    renderer = structlog.processors.JSONRenderer() if json else structlog.dev.ConsoleRenderer()
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.StackInfoRenderer(),
            structlog.processors.format_exc_info,
            redact_secrets,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(numeric),
        logger_factory=structlog.PrintLoggerFactory(file=_CurrentStderr()),
        cache_logger_on_first_use=True,
    )
    logging.basicConfig(level=numeric, stream=sys.stderr, format="%(levelname)s %(name)s: %(message)s")
    _configured = True
