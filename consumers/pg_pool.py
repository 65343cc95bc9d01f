"""psycopg pools whose connections survive a PostgreSQL restart.

After a restart every pooled connection is dead, and the first statement on each one
fails (`AdminShutdown`); a process that takes such a connection and gives up on the
error exits although the server is back. psycopg_pool checks a connection as it
hands it out when given a `check` callback; its own (`ConnectionPool.check_connection`)
costs a round trip every time (~60 us here, on every request of the API). A server
that closed a connection has sent its termination notice, so the socket is readable;
an idle healthy connection has nothing to read. `check_if_readable` runs the full
check only then: a dead connection is replaced, a live one costs one `select`.

`DATABASE_UNAVAILABLE` names the errors a caller should ride out rather than
report as failures.

I/O: PostgreSQL.
"""

from __future__ import annotations

import select
from typing import Any

import psycopg
from eventsourcing import persistence
from psycopg import Connection
from psycopg_pool import ConnectionPool

DATABASE_UNAVAILABLE: tuple[type[Exception], ...] = (
    psycopg.OperationalError,  # cannot connect, connection lost, AdminShutdown, PoolTimeout
    psycopg.InterfaceError,
    persistence.OperationalError,  # the same, as the event store's recorder raises them
    persistence.InterfaceError,
)
"""Errors that mean the database cannot be reached now: retry later, it is not a bug."""


def check_if_readable(conn: Connection[Any]) -> None:
    """psycopg_pool `check`: raise if the server has closed `conn` (see the module)."""
    readable, _, _ = select.select([conn.fileno()], [], [], 0)
    if readable:
        ConnectionPool.check_connection(conn)


GETCONN_TIMEOUT_S = 5.0
"""How long a caller waits for a connection: while the server is down, an error after a
few seconds (a 503, an outage noted) rather than psycopg_pool's default 30."""


RECONNECT_TIMEOUT_S = 5.0
"""How long a pool keeps retrying a lost connection by itself. psycopg_pool retries in
the background at doubling intervals (1, 3, 7, 15, 31, 63 s...) for 5 minutes by default:
after a minute-long outage, its next attempt could come a minute after the server is
back, and until then every caller times out. Once the pool gives up, the slot is free,
and the next caller's request for a connection starts an attempt at once."""


def open_pool(conninfo: str, *, max_size: int, **kwargs: Any) -> ConnectionPool:
    """An open pool (one connection kept) that replaces connections the server closed
    and reconnects as soon as a caller asks after an outage."""
    return ConnectionPool(
        conninfo, min_size=1, max_size=max_size, check=check_if_readable,
        timeout=GETCONN_TIMEOUT_S, reconnect_timeout=RECONNECT_TIMEOUT_S, open=True, **kwargs,
    )  # fmt: skip
