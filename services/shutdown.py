"""Graceful stop for long-running commands (`crm relay`, `crm consume`, `crm run`, `crm api`).

SIGTERM and SIGINT set an event the process's loop checks, so it finishes the batch
in hand (confirm, store its position or offsets) before exiting; the HTTP servers
stop through uvicorn, then close their stores. Either signal exits 0.
"""

from __future__ import annotations

import signal
import threading

import structlog

log = structlog.get_logger("crm.shutdown")


def stop_on_signals(process: str, stop: threading.Event | None = None) -> threading.Event:
    """Set (and return) `stop` on SIGTERM or SIGINT, logging one line naming `process`."""
    event = stop if stop is not None else threading.Event()

    def request_stop(signum: int, _frame: object) -> None:
        log.info("stopping", process=process, signal=signal.Signals(signum).name)
        event.set()

    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, request_stop)
    return event
