"""Serving the HTTP API with granian (a Rust HTTP server; `CRM_HTTP_SERVER=granian`).

One worker: granian's embedded server runs on this process's own event loop (uvloop,
or asyncio's on the embedded store: `services.api_serving.loop_for`) around the app
built here (`crm run` needs that: its projections follow the store in
a thread of the same process). SIGINT and SIGTERM stop it and `serve` returns, so the
caller closes its stores. Several workers: granian's process manager starts each worker
process, which builds its own app from the `CRM_` settings (`api_app_from_env`), as
uvicorn's workers do.
I/O: the listening socket.
"""

from __future__ import annotations

import asyncio
import resource
import signal
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from services.api_serving import HttpLimits

QUIET: dict[str, Any] = {"log_enabled": False, "log_access": False}


def bounded(limits: HttpLimits) -> dict[str, Any]:
    """granian's own bounds on connections.

    * A request head not received within `receive_seconds` closes its connection
      (hyper's header read timeout, which starts with the head's first byte). granian
      has none for a body, nor for a connection that sends nothing (upstream declined
      a body timeout: emmett-framework/granian#728).
    * `backpressure`: how many connections a worker serves at once. Its default is the
      listen backlog (128 for the embedded server): the 129th connection waited in the
      kernel's queue, unanswered, until one of the others closed. 128 idle connections
      (nothing sent, so never timed out) or 128 open event streams (the console opens
      one per board) stopped a worker answering anyone. Here it is the process's
      descriptor limit, the bound uvicorn's workers have.
    """
    from granian.http import HTTP1Settings

    timeout_ms = int(limits.receive_seconds * 1000)
    return {
        "http1_settings": HTTP1Settings(header_read_timeout=timeout_ms),
        "backpressure": resource.getrlimit(resource.RLIMIT_NOFILE)[0],
    }


def serve_granian(app: Any, host: str, port: int, limits: HttpLimits, loop: str = "uvloop") -> None:
    """Serve an app built in this process until SIGINT or SIGTERM, on `loop`."""
    import uvloop
    from granian.constants import Interfaces
    from granian.server.embed import Server

    from services.api_serving import GRACEFUL_SHUTDOWN_SECONDS
    from services.shutdown import SERVER_STOPPING

    async def main() -> None:
        server = Server(
            app, address=host, port=port, interface=Interfaces.ASGI, **bounded(limits), **QUIET
        )
        server.workers_kill_timeout = GRACEFUL_SHUTDOWN_SECONDS  # then its task is cancelled

        def stop() -> None:
            SERVER_STOPPING.begin()  # the event streams end, as under uvicorn
            server.stop()  # type: ignore[no-untyped-call]

        SERVER_STOPPING.stopping = False
        running = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            running.add_signal_handler(signum, stop)
        await server.serve()

    run = asyncio.run if loop == "asyncio" else uvloop.run
    run(main())


def serve_granian_workers(
    target: str, host: str, port: int, workers: int, limits: HttpLimits
) -> None:
    """Serve `workers` processes, each building its app with the factory `target`."""
    from granian import Granian
    from granian.constants import Interfaces, Loops

    from services.api_serving import GRACEFUL_SHUTDOWN_SECONDS

    Granian(
        target,
        address=host,
        port=port,
        interface=Interfaces.ASGI,
        workers=workers,
        loop=Loops.uvloop,
        factory=True,
        workers_kill_timeout=GRACEFUL_SHUTDOWN_SECONDS,
        **bounded(limits),
        **QUIET,
    ).serve()
