"""How the relay and each consumer are doing: table `crm_process_health` in PostgreSQL.

The pipeline's processes serve no HTTP of their own, so each one keeps a row here that
`/readyz` and `/metrics` of the API read (`services.api.pipeline_metrics`): which of its
dependencies are down now (`consumers.outage`), which of those answer but refuse writes
for lack of space (`full_dependencies`: a full disk is not a server down), since when,
and how often its watchdog rebuilt the Kafka consumer or its writer process had to be
started again, and what else keeps it from its work (`trouble`: the relay's audit signer
refusing or failing, which only that process sees).

Writes are best-effort and never raise: a process reporting that PostgreSQL is down
cannot write that to PostgreSQL. It keeps the newest state and the counts not yet
written, and writes them with the next report that gets through. Each process starts
its row afresh (nothing down), so a killed process does not leave a stale "down".

I/O: PostgreSQL through a psycopg pool.
"""

from __future__ import annotations

import os
from datetime import UTC, datetime
from typing import Literal

import msgspec
import psycopg
import structlog
from psycopg_pool import ConnectionPool, PoolTimeout

from consumers.outage import Down
from consumers.pg_ddl import create_tables

log = structlog.get_logger("crm.health")

_CREATE = """
CREATE TABLE IF NOT EXISTS crm_process_health (
    process text PRIMARY KEY,
    down text[] NOT NULL DEFAULT '{}',
    down_since timestamptz,
    watchdog_restarts bigint NOT NULL DEFAULT 0,
    writer_restarts bigint NOT NULL DEFAULT 0,
    pid integer,
    updated_at timestamptz NOT NULL DEFAULT now(),
    trouble text
)"""
_ADD_TROUBLE = "ALTER TABLE crm_process_health ADD COLUMN IF NOT EXISTS trouble text"
_ADD_FULL = """ALTER TABLE crm_process_health
    ADD COLUMN IF NOT EXISTS full_dependencies text[] NOT NULL DEFAULT '{}'"""
_UPSERT = """
INSERT INTO crm_process_health AS h
    (process, down, down_since, watchdog_restarts, writer_restarts, pid, updated_at, trouble,
    full_dependencies)
VALUES (%(process)s, %(down)s, %(since)s, %(watchdog)s, %(writer)s, %(pid)s, now(),
    %(trouble)s, %(full)s)
ON CONFLICT (process) DO UPDATE SET
    down = EXCLUDED.down,
    full_dependencies = EXCLUDED.full_dependencies,
    down_since = EXCLUDED.down_since,
    watchdog_restarts = h.watchdog_restarts + EXCLUDED.watchdog_restarts,
    writer_restarts = h.writer_restarts + EXCLUDED.writer_restarts,
    pid = EXCLUDED.pid,
    updated_at = now(),
    trouble = EXCLUDED.trouble"""
_SELECT = """
SELECT process, down, down_since, watchdog_restarts, writer_restarts, pid, updated_at,
    to_jsonb(h) ->> 'trouble', to_jsonb(h) -> 'full_dependencies'
FROM crm_process_health h ORDER BY process"""
"""`trouble` and `full_dependencies` read through `to_jsonb`: NULL from a table whose
processes predate them (an API upgraded first reads it before a new process has added
the columns)."""

Counter = Literal["watchdog_restarts", "writer_restarts"]
_ERRORS = (psycopg.Error, PoolTimeout)


class ProcessHealth(msgspec.Struct, frozen=True, kw_only=True):
    """One process's row."""

    process: str
    down: list[str]
    down_since: datetime | None
    watchdog_restarts: int
    writer_restarts: int
    pid: int | None
    updated_at: datetime
    trouble: str | None = None
    full: list[str] = []
    """Those of `down` that answer but refuse writes for lack of space."""


class HealthReport:
    """This process's row: `down(...)` on every change, `count(...)` per intervention."""

    def __init__(self, pool: ConnectionPool, process: str) -> None:
        self._pool, self._process = pool, process
        self._down: frozenset[str] = frozenset()
        self._full: frozenset[str] = frozenset()
        self._since: datetime | None = None
        self._pending: dict[Counter, int] = {"watchdog_restarts": 0, "writer_restarts": 0}
        self._trouble: str | None = None
        with pool.connection() as conn:
            create_tables(conn, _CREATE, _ADD_TROUBLE, _ADD_FULL)
        self._write()

    def down(self, dependencies: frozenset[str]) -> None:
        """The dependencies down now (empty: healthy); a `Down` also says which are full."""
        if dependencies and not self._down:
            self._since = datetime.now(UTC)
        self._down = dependencies
        self._full = dependencies.full if isinstance(dependencies, Down) else frozenset()
        if not dependencies:
            self._since = None
        self._write()

    def trouble(self, text: str | None) -> None:
        """What else keeps the process from its work now (None: nothing)."""
        self._trouble = text
        self._write()

    def count(self, counter: Counter) -> None:
        self._pending[counter] += 1
        self._write()

    def _write(self) -> None:
        values = {
            "process": self._process, "down": sorted(self._down), "since": self._since,
            "watchdog": self._pending["watchdog_restarts"],
            "writer": self._pending["writer_restarts"], "pid": os.getpid(),
            "trouble": self._trouble, "full": sorted(self._full),
        }  # fmt: skip
        try:
            with self._pool.connection(timeout=2) as conn, conn.transaction():
                conn.execute(_UPSERT, values)
        except _ERRORS as error:  # written with the next report that gets through
            log.debug("health report not written", error=str(error))
            return
        self._pending = {"watchdog_restarts": 0, "writer_restarts": 0}


def read_health(pool: ConnectionPool) -> list[ProcessHealth]:
    """Every process's row (none before the first process started). The table's absence
    is asked, not found by a failing query: an API without consumers is scraped for
    /metrics and /readyz every few seconds, and each failure was an ERROR in
    PostgreSQL's log."""
    with pool.connection() as conn:
        exists = conn.execute("SELECT to_regclass('crm_process_health')").fetchone()
        if exists is None or exists[0] is None:
            return []
        rows = conn.execute(_SELECT).fetchall()
    return [_row(*row) for row in rows]


def _row(  # noqa: PLR0917 - the columns of _SELECT, in order
    process: str, down: list[str], since: datetime | None, watchdog: int, writer: int,
    pid: int | None, updated: datetime, trouble: str | None, full: list[str] | None,
) -> ProcessHealth:  # fmt: skip
    return ProcessHealth(
        process=process, down=list(down), down_since=since, watchdog_restarts=watchdog,
        writer_restarts=writer, pid=pid, updated_at=updated, trouble=trouble,
        full=list(full or ()),
    )  # fmt: skip
