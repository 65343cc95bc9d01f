"""structlog set-up: JSON lines on stdout in production, readable console on a terminal.

Callers bind request or batch context with `structlog.contextvars.bind_contextvars`
and emit one canonical line per request or batch.
"""

from __future__ import annotations

import logging
import sys
from typing import TextIO, cast

import structlog

from services.settings import Settings


class _Stdout:
    """`sys.stdout` as it is when a line is written, not when logging was configured
    (a caller that swaps it, as pytest's capsys does, may close the one it replaced)."""

    def write(self, text: str) -> int:
        return sys.stdout.write(text)

    def flush(self) -> None:
        sys.stdout.flush()


def configure_logging(settings: Settings) -> None:
    level = getattr(logging, settings.log_level.upper())
    console = settings.log_format == "console" or (
        settings.log_format == "auto" and sys.stdout.isatty()
    )
    renderer: structlog.types.Processor = (
        structlog.dev.ConsoleRenderer() if console else structlog.processors.JSONRenderer()
    )
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(level),
        logger_factory=structlog.PrintLoggerFactory(cast(TextIO, _Stdout())),  # write, flush
        cache_logger_on_first_use=True,
    )
    logging.basicConfig(level=max(level, logging.WARNING), stream=sys.stderr)
    # kafka-python logs every refused connection at ERROR; our relay and runner log one
    # line per state change instead. Its own lines are kept for debugging.
    logging.getLogger("kafka").setLevel(
        logging.DEBUG if level <= logging.DEBUG else logging.CRITICAL
    )
