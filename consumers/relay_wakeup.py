"""How the relay waits for new events: LISTEN/NOTIFY on PostgreSQL, polling elsewhere.

A wake-up is only a hint: the relay reads the log after every wait, notified or not,
so a notification lost while the LISTEN connection was down costs at most one wait.
That connection is opened again on the next wait after a failure (a PostgreSQL
restart closes it); the failure itself is raised, so the relay can count the outage.

I/O: one PostgreSQL connection (LISTEN), or none.
"""

from __future__ import annotations

import time
from typing import Any, Protocol

import psycopg
from psycopg import sql


class Wakeup(Protocol):
    """Blocks until new events may have been stored, or `timeout` seconds pass."""

    def wait(self, timeout: float) -> None: ...

    def close(self) -> None:
        """Drop the connection, if any; a later `wait` opens it again."""
        ...


class ListenWakeup:
    """PostgreSQL LISTEN on the channel the event store NOTIFYs on every insert:
    a commit wakes the relay within milliseconds instead of a polling interval."""

    def __init__(self, conninfo: str, channel: str) -> None:
        self._conninfo, self._channel = conninfo, channel
        self._conn: psycopg.Connection[Any] | None = None
        self._listen()

    def _listen(self) -> psycopg.Connection[Any]:
        conn = psycopg.connect(self._conninfo, autocommit=True, connect_timeout=5)
        conn.execute(sql.SQL("LISTEN {}").format(sql.Identifier(self._channel)))
        self._conn = conn
        return conn

    def wait(self, timeout: float) -> None:
        conn = self._conn or self._listen()
        try:
            for _ in conn.notifies(timeout=timeout, stop_after=1):
                pass
        except psycopg.Error:
            self.close()  # listen again on the next wait
            raise

    def close(self) -> None:
        if self._conn is not None:
            conn, self._conn = self._conn, None
            conn.close()


class PollWakeup:
    """For stores without notifications (SQLite): wait a short interval."""

    def __init__(self, interval: float = 0.05) -> None:
        self._interval = interval

    def wait(self, timeout: float) -> None:
        time.sleep(min(timeout, self._interval))

    def close(self) -> None:
        return None


def wakeup_for(recorder: Any, conninfo: str | None) -> Wakeup:
    """LISTEN/NOTIFY on PostgreSQL, polling otherwise."""
    channel = getattr(recorder, "channel_name", None)
    if conninfo is not None and isinstance(channel, str):
        return ListenWakeup(conninfo, channel)
    return PollWakeup()
