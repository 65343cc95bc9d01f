"""Whether PostgreSQL or Kafka answers now; if not, whether waiting can help.

A process that starts while a dependency is away waits for it as long as it takes, as
a running process rides out an outage (`consumers.outage`): a server refusing
connections, starting up or shutting down, a timeout, a lost connection, no broker
answering. A reason no waiting fixes is `Misconfigured`, reported at once: a refused
login, a database or role that does not exist, a malformed or unsupported connection
parameter, a host name that does not exist (DNS says so; a resolver that does not
answer is an outage). This module is the one place that tells the two apart.

libpq reports a failed connection with no SQLSTATE (psycopg's `sqlstate` is None), so
the reasons are recognized by their text: libpq's own, and the server's in English.
A server with another `lc_messages` words its refusals otherwise; they are then waited
for like an outage, with the reason in the "dependency lost" line. kafka-python tells
no refusal from a broker that is away, so for Kafka only the host names are checked.

I/O: PostgreSQL, Kafka, DNS.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable

import psycopg

from consumers.outage import Dependencies

CONNECT_TIMEOUT_S = 5
"""One attempt's bound: a stop asked for meanwhile is seen after at most this long."""

_NO_SUCH_NAME = frozenset(
    code for code in (socket.EAI_NONAME, getattr(socket, "EAI_NODATA", None)) if code
)
"""getaddrinfo's answers meaning DNS has no such name (not that it did not answer)."""

_MISCONFIGURED_POSTGRES = (
    "authentication failed",  # password (wrong user or password), peer, ident, cert
    "no password supplied",
    "no pg_hba.conf entry",  # the server refuses this user, database or client address
    "is not permitted to log in",
    "does not exist",  # the database, the role, a certificate file
    "permission denied for database",  # no CONNECT privilege
    "SSL was required",  # sslmode asks for what the server does not offer
    "invalid ",  # a parameter (sslmode, port...), or no PostgreSQL server on that port
    *(f"[Errno {code}]" for code in sorted(_NO_SUCH_NAME)),  # "failed to resolve host"
)


class Misconfigured(Exception):  # noqa: N818 - a reason, as `BrokerUnavailable`
    """A dependency refused for a reason no waiting fixes (its first line)."""


class Unavailable(Exception):  # noqa: N818 - a reason, as `BrokerUnavailable`
    """A dependency did not answer, for a reason its coming back fixes (the error that
    said so is the cause)."""


def first_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


def postgres_misconfigured(error: psycopg.Error) -> bool:
    """True when a failed connection is a configuration no waiting fixes: any error
    but a connection's (`OperationalError`, `InterfaceError`), or one whose text says
    so (see the module)."""
    if not isinstance(error, psycopg.OperationalError | psycopg.InterfaceError):
        return True
    text = str(error)
    return any(marker in text for marker in _MISCONFIGURED_POSTGRES)


def name_not_found(error: OSError) -> bool:
    """True when `error` (from resolving a host name) says the name does not exist."""
    return isinstance(error, socket.gaierror) and error.errno in _NO_SUCH_NAME


def reach_postgres(url: str) -> None:
    """Return once the server answers a query; else `Misconfigured` or `Unavailable`."""
    try:
        with psycopg.connect(url, connect_timeout=CONNECT_TIMEOUT_S) as conn:
            conn.execute("SELECT 1")
    except psycopg.Error as error:
        if postgres_misconfigured(error):
            raise Misconfigured(first_line(error)) from None
        raise Unavailable(first_line(error)) from error


def reach_kafka(bootstrap: str) -> None:
    """Return once a broker answers; `Misconfigured` when no bootstrap host name exists,
    else `Unavailable`."""
    from consumers.kafka_io import check_broker  # imports in ~0.7 s
    from consumers.kafka_records import BrokerUnavailable

    servers = bootstrap_servers(bootstrap)
    unknown = [host for host, port in servers if _unknown(host, port)]
    if len(unknown) == len(servers):
        raise Misconfigured(f"no such host: {', '.join(unknown)}")
    try:
        check_broker(bootstrap, timeout=CONNECT_TIMEOUT_S)
    except BrokerUnavailable as error:
        raise Unavailable(first_line(error)) from error


def bootstrap_servers(bootstrap: str) -> list[tuple[str, int]]:
    """The (host, port) of each server of a bootstrap list (`host:port,...`, checked by
    the settings; an IPv6 host may be in brackets)."""
    pairs = (server.strip().rpartition(":") for server in bootstrap.split(","))
    return [(host.strip("[]"), int(port)) for host, _, port in pairs]


def _unknown(host: str, port: int) -> bool:
    try:
        socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except OSError as error:
        return name_not_found(error)
    return False


def wait_until_reachable(
    reach: Callable[[], None],
    dependency: str,
    deps: Dependencies,
    stop: threading.Event,
    *,
    within: float | None = None,
) -> bool:
    """Call `reach` until it returns (True) or `stop` is set (False), waiting between
    attempts as `deps` says, with its one line when lost and one when back.

    `Misconfigured` is raised at once; with `within`, the last `Unavailable` from an
    attempt made that many seconds on (for commands that should not wait long)."""
    deadline = None if within is None else time.monotonic() + within
    while not stop.is_set():
        try:
            reach()
        except Unavailable as error:
            delay = deps.lost(dependency, error.__cause__ or error)
            if deadline is not None:
                if time.monotonic() >= deadline:
                    raise
                delay = min(delay, deadline - time.monotonic())
            stop.wait(delay)
        else:
            deps.back(dependency)
            return True
    return False
