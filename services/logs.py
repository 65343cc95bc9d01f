"""structlog set-up: JSON lines on stdout in production, readable console on a terminal.

Callers bind request or batch context with `structlog.contextvars.bind_contextvars`
and emit one canonical line per request or batch. Every line is written out as it is
logged, whatever stdout is (a terminal, a pipe, a file): structlog's writer flushes
each line, and stdout and stderr are made line-buffered for everything else printed.
A line is one write, its newline included: `crm api --workers N` share one stdout, and
the printer's two writes (the line, then its newline) let two workers' lines run into
one (`{...}{...}`, seen as they stopped).
A consumer's writer process calls this too (`consumers.projection_writer`), so its
lines look and flush like its runner's. The standard library's records (uvicorn's,
psycopg's, any library's) are rendered by the same renderer, on stderr: no line a
process writes is free text, whatever a request made a library say.
"""

from __future__ import annotations

import io
import logging
import sys
from typing import TextIO, cast

import structlog

from services.settings import Settings


class _Current:
    """`sys.stdout` or `sys.stderr` as it is when a line is written, not when logging was
    configured (a caller that swaps it, as pytest's capsys does, may close the one it
    replaced)."""

    def __init__(self, name: str) -> None:
        self.name = name

    def write(self, text: str) -> int:
        return cast(TextIO, getattr(sys, self.name)).write(text)

    def flush(self) -> None:
        cast(TextIO, getattr(sys, self.name)).flush()


_STDOUT = cast(TextIO, _Current("stdout"))  # has write and flush
_STDERR = cast(TextIO, _Current("stderr"))


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
        processors=[structlog.contextvars.merge_contextvars, *_STAMPED, *_RENDERED, renderer],
        wrapper_class=structlog.make_filtering_bound_logger(level),
        logger_factory=structlog.WriteLoggerFactory(_STDOUT),  # one write a line
        cache_logger_on_first_use=True,
    )
    _route_standard_logging(renderer, max(level, logging.WARNING))
    # kafka-python logs every refused connection at ERROR, psycopg_pool every failed
    # reconnection at WARNING; our processes log one line when a dependency is lost and
    # one when it is back instead (`consumers.outage`). Theirs are kept for debugging.
    for library in ("kafka", "psycopg.pool"):
        logging.getLogger(library).setLevel(
            logging.DEBUG if level <= logging.DEBUG else logging.CRITICAL
        )


_STAMPED: tuple[structlog.types.Processor, ...] = (
    structlog.processors.add_log_level,
    structlog.processors.TimeStamper(fmt="iso", utc=True),
)
_RENDERED: tuple[structlog.types.Processor, ...] = (
    # before the renderer: a plain traceback, never the console's pretty one, which
    # prints each frame's locals (plaintext a request had opened)
    structlog.processors.format_exc_info,
)


class _StructlogHandler(logging.StreamHandler[TextIO]):
    """The root logger's handler that `configure_logging` installs (one, replaced when
    it is called again)."""


def _route_standard_logging(renderer: structlog.types.Processor, level: int) -> None:
    """The standard library's records (uvicorn's, psycopg's, kafka-python's...) written
    to stderr by structlog's renderer, as our own lines are: JSON in production, the
    console's on a terminal. Before, they were free text, whatever `CRM_LOG_FORMAT`
    said; a request with `Connection: Upgrade` wrote two such lines (red team s32 F3)."""
    handler = _StructlogHandler(_STDERR)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=[structlog.stdlib.add_logger_name, *_STAMPED],
            processors=[
                structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                *_RENDERED,
                renderer,
            ],
        )
    )
    root = logging.getLogger()
    for old in [h for h in root.handlers if isinstance(h, _StructlogHandler)]:
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
