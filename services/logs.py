"""structlog set-up: JSON lines on stdout in production, readable console on a terminal.

Callers bind request or batch context with `structlog.contextvars.bind_contextvars`
and emit one canonical line per request or batch. Every line is written out as it is
logged, whatever stdout is (a terminal, a pipe, a file): structlog's printer flushes
each line, and stdout and stderr are made line-buffered for everything else printed.
A consumer's writer process calls this too (`consumers.projection_writer`), so its
lines look and flush like its runner's.
"""

from __future__ import annotations

import io
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
    for stream in (sys.stdout, sys.stderr):
        if isinstance(stream, io.TextIOWrapper):
            stream.reconfigure(line_buffering=True)
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
            # before the renderer: a plain traceback, never the console's pretty one,
            # which prints each frame's locals (plaintext a request had opened)
            structlog.processors.format_exc_info,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(level),
        logger_factory=structlog.PrintLoggerFactory(cast(TextIO, _Stdout())),  # write, flush
        cache_logger_on_first_use=True,
    )
    logging.basicConfig(level=max(level, logging.WARNING), stream=sys.stderr)
    # kafka-python logs every refused connection at ERROR, psycopg_pool every failed
    # reconnection at WARNING; our processes log one line when a dependency is lost and
    # one when it is back instead (`consumers.outage`). Theirs are kept for debugging.
    for library in ("kafka", "psycopg.pool"):
        logging.getLogger(library).setLevel(
            logging.DEBUG if level <= logging.DEBUG else logging.CRITICAL
        )
