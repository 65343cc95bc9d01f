"""Serving the HTTP API: one process, or `--workers N` processes, with uvicorn or granian
(`CRM_HTTP_SERVER`, `--server`; `services.granian_serving`).

uvloop and httptools are used because the event loop thread is on every request's
critical path and shares the GIL with the handler threads: h11 (pure Python) and the
asyncio selector loop cost ~40% more CPU per request on the loop than httptools and
uvloop, and each socket call there releases the GIL, which the loop then waits for.
`crm run` (embedded) is the exception, see `loop_for`. httptools sets no bound on a
request head nor a time to receive one: uvicorn serves it through
`services.http_request_bounds`, which does (`CRM_HTTP_RECEIVE_SECONDS`), and which aborts
a connection whose client takes nothing it is sent (`CRM_HTTP_SEND_SECONDS`).

Several workers: each process is a whole API (its own pool, group committer and
aggregate cache) built by `api_app_from_env` from the same `CRM_` settings. That is
correct across processes: the event store's unique (id, version) key decides races
between them, and a command decided on cached state that lost such a race, or that
was refused, is decided again on a fresh load (see `services.aggregate_cache`).
Group commit still batches the concurrent commands *within* each process.
"""

from __future__ import annotations

import gc
from collections.abc import Callable
from functools import partial
from typing import TYPE_CHECKING, Any, NamedTuple, cast

from services.shutdown import SERVER_STOPPING

if TYPE_CHECKING:
    import asyncio

    from litestar import Litestar

    from services.settings import Settings

LOOP = "uvloop"
EMBEDDED_LOOP = "asyncio"


class HttpLimits(NamedTuple):
    """What the HTTP server allows a client's connection (`CRM_HTTP_*`)."""

    receive_seconds: float = 30.0  # to send a whole request (`services.http_request_bounds`)
    send_seconds: float = 30.0  # to take anything of an answer (uvicorn only, as above)

    @classmethod
    def of(cls, settings: Settings) -> HttpLimits:
        return cls(settings.http_receive_seconds, settings.http_send_seconds)

    def uvicorn_protocol(self) -> type[asyncio.Protocol]:
        """uvicorn's `http`: a factory it only calls (typed as the class it stands for),
        picklable for the worker processes."""
        from services.http_request_bounds import BoundedHttpToolsProtocol

        bounded = partial(
            BoundedHttpToolsProtocol,
            receive_seconds=self.receive_seconds,
            send_seconds=self.send_seconds,
        )
        return cast("type[asyncio.Protocol]", bounded)


DEFAULT_LIMITS = HttpLimits()


def loop_for(settings: Settings) -> str:
    """A serving process's event loop: uvloop, but asyncio's own on the embedded
    store. There the read models are SQLite, queried on the loop with nothing to await, so
    a department page is ~1 ms of callbacks in a row; under saturation uvloop then started
    newly read requests ahead of those already waiting (uvloop issue #123). At 64
    connections the embedded page's p99 was 1.3-1.6 s with uvloop and 95 ms with asyncio,
    at the same ~930 pages/s; cheaper requests lose 5-12 % of throughput
    (`bench/RESULTS.md`). On PostgreSQL reads await their queries, and uvloop's tails
    measured no worse than asyncio's, at 10-15 % more requests a second."""
    return EMBEDDED_LOOP if settings.embedded else LOOP


def serve(
    app: Any,
    host: str,
    port: int,
    server: str = "uvicorn",
    *,
    loop: str = LOOP,
    limits: HttpLimits = DEFAULT_LIMITS,
) -> None:
    """Serve an app built in this process (one worker) on `loop` (`loop_for`)."""
    freeze_startup_objects()
    try:
        if server == "granian":
            from services.granian_serving import serve_granian

            serve_granian(app, host, port, limits, loop)
            return
        import uvicorn
        from litestar import Litestar

        if isinstance(app, Litestar):  # `crm api`'s and `crm run`'s
            app.on_startup.append(SERVER_STOPPING.on_signals)  # once uvicorn's are in
        http = limits.uvicorn_protocol()
        uvicorn.run(app, host=host, port=port, loop=loop, http=http, **_UVICORN)
    finally:
        gc.unfreeze()  # see freeze_startup_objects


FACTORY = "services.api_serving:api_app_from_env"


def serve_workers(
    host: str, port: int, workers: int, server: str, limits: HttpLimits = DEFAULT_LIMITS
) -> None:
    """Serve `workers` processes, each building its app with `api_app_from_env`."""
    if server == "granian":
        from services.granian_serving import serve_granian_workers

        serve_granian_workers(FACTORY, host, port, workers, limits)
        return
    import uvicorn

    uvicorn.run(
        FACTORY,
        factory=True,
        workers=workers,
        host=host,
        port=port,
        loop=LOOP,
        http=limits.uvicorn_protocol(),
        **_UVICORN,
    )


GRACEFUL_SHUTDOWN_SECONDS = 8
"""How long a stopping server waits for the requests under way before it cancels them
(uvicorn's `timeout_graceful_shutdown`, granian's `workers_kill_timeout`), then closes
the app all the same (the access log's queued records stored, the stores closed). The
event streams end at once (`services.shutdown.SERVER_STOPPING`); every other request
holds the server for a few seconds at most (a read waits `CRM_READ_WAIT_SECONDS` 2 s
and its query `CRM_READ_QUERY_SECONDS` 1 s), so it finishes within this; what does not
(a client still sending its body) is cut. Without a bound, a stream's client held a
stopping process for as long as it stayed. Under the 10 s Docker gives a container
before its SIGKILL, with room for the app's own close."""
_UVICORN: dict[str, Any] = {
    # uvicorn's own handlers wrote its records as free text on stderr, not propagated:
    # without them they reach the root logger's, which renders them as ours are
    # (`services.logs`; red team s32 F3)
    "log_config": None,
    "log_level": "warning",
    "access_log": False,
    "timeout_graceful_shutdown": GRACEFUL_SHUTDOWN_SECONDS,
}


def api_app_from_env() -> Litestar:
    """The `crm api` app of one worker process: PostgreSQL from the `CRM_` settings,
    closed again when the worker shuts down."""
    from services.logs import configure_logging
    from services.settings import load_settings

    settings = load_settings()
    configure_logging(settings)
    app, close = build_api_app(settings)
    app.on_startup.append(SERVER_STOPPING.on_signals)  # the worker's own server's signals
    app.on_shutdown += [close, gc.unfreeze]  # see freeze_startup_objects
    freeze_startup_objects()
    return app


def freeze_startup_objects() -> None:
    """Put what the process built before serving (modules, classes, the app: ~93,000
    objects) out of the cyclic garbage collector's reach. It lives as long as the
    process, yet every full collection walked it again: a ~50 ms pause of every request
    under way, about twice a minute under load. What is already garbage is collected
    first; afterwards a full collection walks only what requests made (~4 ms). When the
    server stops, everything is unfrozen again, so that the process's exit finalizes
    what is left as before: frozen, an SQLite connection in a reference cycle would never
    be closed, and its WAL files would stay (the embedded access log's is now closed by
    `Runtime.close`; the key, principal and idempotency stores still rely on this)."""
    gc.collect()
    gc.freeze()


def build_api_app(settings: Settings) -> tuple[Litestar, Callable[[], None]]:
    """The API on PostgreSQL with its read models, and the function that closes both."""
    from consumers.store_factory import open_store
    from services.api import create_app
    from services.api.read_models import ReadModels
    from services.api.read_positions import AppliedVersionsWatermark
    from services.bootstrap import bootstrap

    runtime = bootstrap(settings)
    store = open_store(settings.database_url, settings.data_dir)
    watermark = AppliedVersionsWatermark(store, runtime.app.recorder, runtime.app.head_position)
    app = create_app(runtime, queries_helper=ReadModels(store), applied_position=watermark)

    def close() -> None:
        store.close()
        runtime.close()

    return app, close
