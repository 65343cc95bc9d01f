"""Graceful stop for long-running commands (`crm relay`, `crm consume`, `crm run`, `crm api`).

SIGTERM and SIGINT set an event the process's loop checks, so it finishes the batch
in hand (confirm, store its position or offsets) before exiting; the HTTP servers
stop through uvicorn (or granian), then close their stores. Either signal exits 0.

An HTTP server, once told to stop, closes its port and waits for the responses under
way; an event stream never ends by itself, so one client kept the process running for
as long as it stayed (red team: a deploy hung until SIGKILL, which lost the access
log's queued records). `SERVER_STOPPING` tells the streams the server has begun to
stop: they end their bodies at once (their clients reconnect elsewhere with
`Last-Event-ID`), and the server's own stop runs on. The server's signal handlers set
it (`ServerStopping.on_signals`, installed from the app's startup: uvicorn installs
its handlers before that and puts the previous ones back when it stops).
"""

from __future__ import annotations

import asyncio
import signal
import threading
from collections.abc import Callable
from functools import partial
from types import FrameType
from typing import Any

import anyio
import structlog

log = structlog.get_logger("crm.shutdown")
SIGNALS = (signal.SIGTERM, signal.SIGINT)
Handler = Callable[[int, FrameType | None], Any]


def stop_on_signals(process: str, stop: threading.Event | None = None) -> threading.Event:
    """Set (and return) `stop` on SIGTERM or SIGINT, logging one line naming `process`."""
    event = stop if stop is not None else threading.Event()

    def request_stop(signum: int, _frame: object) -> None:
        log.info("stopping", process=process, signal=signal.Signals(signum).name)
        event.set()

    for signum in SIGNALS:
        signal.signal(signum, request_stop)
    return event


class ServerStopping:
    """Whether this process's HTTP server has begun to stop (one server a process, as
    `crm api` and `crm run` are; each of `--workers N` is a process of its own)."""

    def __init__(self) -> None:
        self.stopping = False
        # each waiting `wait`'s loop and event; no lock: `begin` runs in signal handlers
        self._waiting: dict[asyncio.Event, asyncio.AbstractEventLoop] = {}

    def begin(self) -> None:
        """The server stops: wake every `wait`. Safe in a signal handler, on any thread."""
        if not self.stopping:
            log.info("server stopping: ending event streams", streams=len(self._waiting))
        self.stopping = True
        for event, loop in list(self._waiting.items()):
            try:
                loop.call_soon_threadsafe(event.set)
            except RuntimeError:  # its loop is closed: nothing waits there any more
                continue

    async def wait(self, seconds: float) -> bool:
        """Wait `seconds`, or less should the server begin to stop; whether it has."""
        event = asyncio.Event()
        self._waiting[event] = asyncio.get_running_loop()
        try:
            if not self.stopping:
                with anyio.move_on_after(seconds):
                    await event.wait()
        finally:
            del self._waiting[event]
        return self.stopping

    def on_signals(self) -> None:
        """`begin` on SIGTERM and SIGINT, then whatever handled them before (the
        server's own handlers: call this once they are installed, from the app's
        startup). The main thread only, where handlers are; elsewhere (a test's server
        in a thread) nothing changes. A new server starts not stopping."""
        self.stopping = False
        if threading.current_thread() is not threading.main_thread():
            return
        for signum in SIGNALS:
            previous = signal.getsignal(signum)
            if callable(previous):
                signal.signal(signum, partial(self._then, previous))

    def _then(self, handler: Handler, signum: int, frame: FrameType | None) -> None:
        self.begin()
        handler(signum, frame)


SERVER_STOPPING = ServerStopping()
"""This process's: what its event streams watch (`services.api.events_stream`)."""
