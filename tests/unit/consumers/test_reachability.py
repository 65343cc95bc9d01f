"""What an unreachable PostgreSQL or Kafka means at start: an outage to wait out as long
as it takes, or a configuration no waiting fixes (`consumers.reachability`)."""

from __future__ import annotations

import socket
import threading

import psycopg
import pytest
from structlog.testing import capture_logs

from consumers.outage import Dependencies
from consumers.reachability import (
    Misconfigured,
    Unavailable,
    name_not_found,
    postgres_misconfigured,
    wait_until_reachable,
)

AT = 'connection failed: connection to server at "127.0.0.1", port 5432 failed: '

OUTAGES = [
    AT + "Connection refused\n\tIs the server running on that host and accepting TCP/IP?",
    AT + "FATAL:  the database system is starting up",
    AT + "FATAL:  the database system is shutting down",
    AT + "FATAL:  the database system is not yet accepting connections",
    AT + "FATAL:  the database system is in recovery mode",
    AT + "FATAL:  sorry, too many clients already",
    AT + "timeout expired",
    AT + "server closed the connection unexpectedly",
    AT + "Connection reset by peer",
    AT + "No route to host",
    'connection failed: connection to server on socket "/run/postgresql/.s.PGSQL.5432"'
    " failed: No such file or directory",
    "failed to resolve host 'db': [Errno -3] Temporary failure in name resolution",
    "terminating connection due to administrator command",
]

CONFIGURATION = [
    AT + 'FATAL:  password authentication failed for user "crm"',
    AT + 'FATAL:  database "crm_typo" does not exist',
    AT + 'FATAL:  role "nobody" does not exist',
    AT + 'FATAL:  no pg_hba.conf entry for host "10.0.0.5", user "crm", database "crm"',
    AT + 'FATAL:  role "crm" is not permitted to log in',
    AT + 'FATAL:  permission denied for database "crm"',
    AT + 'FATAL:  Peer authentication failed for user "crm"',
    AT + "fe_sendauth: no password supplied",
    AT + "server does not support SSL, but SSL was required",
    AT + "received invalid response to SSL negotiation: H",
    'connection is bad: invalid sslmode value: "bogus"',
    'invalid integer value "x" for connection option "port"',
    f"failed to resolve host 'dbx': [Errno {socket.EAI_NONAME}] Name or service not known",
]


@pytest.mark.parametrize("message", OUTAGES)
def test_what_an_outage_explains_is_waited_for(message: str) -> None:
    assert not postgres_misconfigured(psycopg.OperationalError(message))


@pytest.mark.parametrize("message", CONFIGURATION)
def test_what_no_waiting_fixes_is_configuration(message: str) -> None:
    assert postgres_misconfigured(psycopg.OperationalError(message))


def test_an_error_other_than_a_connections_is_configuration() -> None:
    assert postgres_misconfigured(psycopg.ProgrammingError('invalid URI query parameter: "x"'))
    assert not postgres_misconfigured(psycopg.InterfaceError("the connection is closed"))


def test_a_name_that_does_not_exist_is_configuration_a_resolver_away_is_not() -> None:
    assert name_not_found(socket.gaierror(socket.EAI_NONAME, "Name or service not known"))
    assert not name_not_found(socket.gaierror(socket.EAI_AGAIN, "Temporary failure"))
    assert not name_not_found(ConnectionRefusedError(111, "Connection refused"))


class Server:
    """A dependency that refuses `outage` times, then answers (or never, with None)."""

    def __init__(self, outage: int | None, *, stop: threading.Event | None = None) -> None:
        self.outage, self.attempts, self.stop = outage, 0, stop

    def reach(self) -> None:
        self.attempts += 1
        if self.stop is not None and self.attempts == 3:
            self.stop.set()  # a signal arrives during the wait
        if self.outage is None or self.attempts <= self.outage:
            raise Unavailable("refused") from ConnectionRefusedError("refused")


def _deps() -> Dependencies:
    return Dependencies("relay", first_delay=0.001, max_delay=0.002)


def test_an_outage_is_waited_out_with_one_line_lost_and_one_back() -> None:
    server = Server(outage=25)
    with capture_logs() as logs:
        assert wait_until_reachable(server.reach, "postgres", _deps(), threading.Event())
    assert server.attempts == 26
    assert [(e["event"], e["dependency"]) for e in logs] == [
        ("dependency lost", "postgres"),
        ("dependency back", "postgres"),
    ]
    assert logs[0]["error"] == "ConnectionRefusedError: refused"  # the cause, as it was


def test_without_a_bound_nothing_but_a_stop_ends_the_wait() -> None:
    stop = threading.Event()
    server = Server(outage=None, stop=stop)
    assert not wait_until_reachable(server.reach, "kafka", _deps(), stop)
    assert server.attempts == 3


def test_a_configuration_error_ends_the_wait_at_once() -> None:
    def refused() -> None:
        raise Misconfigured("password authentication failed")

    with capture_logs() as logs, pytest.raises(Misconfigured):
        wait_until_reachable(refused, "postgres", _deps(), threading.Event())
    assert logs == []


def test_a_bounded_wait_ends_with_the_outage() -> None:
    server = Server(outage=None)
    with pytest.raises(Unavailable):
        wait_until_reachable(server.reach, "postgres", _deps(), threading.Event(), within=0.05)
    assert server.attempts > 1
