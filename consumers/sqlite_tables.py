"""The tables of a SQLite projection generation, and its status.

Its rows' tables (`create_table`, typed by `LITE_TYPES`) and the bookkeeping beside
them: `_positions` (next offset per partition), `_applied` (last version per aggregate),
`_dead_letters`, `_status` (counters and progress) and `_rejected` (runs of rejected
records): created with the generation (`create_bookkeeping`), brought up to date on a
generation an older version made (`REJECTED`, `lacking`), read for status
(`read_status`). `sqlite_session` writes them, batch by batch; `pg_bookkeeping` is
PostgreSQL's.

I/O: the sqlite3 connection passed in (DDL; `read_status` and `lacking` read).
"""

from __future__ import annotations

import sqlite3
from datetime import datetime

from consumers.readmodel_store import Status
from consumers.sqlite_session import SqliteSession
from consumers.sqlite_values import ident
from projections.base import Table

LITE_TYPES = {
    "text": "TEXT", "int": "INTEGER", "bigint": "INTEGER", "bool": "INTEGER", "float": "REAL",
    "numeric": "TEXT", "uuid": "TEXT", "timestamp": "TEXT",
}  # fmt: skip

_ADDED = (
    ("_status", "rejected", "INTEGER NOT NULL DEFAULT 0"),
    ("_rejected", "last_offset", "INTEGER"),
    ("_rejected", "records", "INTEGER NOT NULL DEFAULT 1"),
    ("_rejected", "last_at", "TEXT"),
)
REJECTED = (
    "CREATE TABLE IF NOT EXISTS {p}___rejected (id INTEGER PRIMARY KEY, topic TEXT,"
    " partition INTEGER, kafka_offset INTEGER, position INTEGER, reason TEXT,"
    " at TEXT NOT NULL DEFAULT (datetime('now')))",
    *(f"ALTER TABLE {{p}}__{table} ADD COLUMN {column} {kind}" for table, column, kind in _ADDED),
)
"""The rejected records (runs of them: `consumers.rejected_runs`) and their count
(`_status.rejected`), as `pg_bookkeeping.REJECTED`; what a generation an older version
created lacks of it is added (`lacking`, `SqliteStore`)."""
_BOOKKEEPING = (
    "CREATE TABLE {p}___positions (topic TEXT, partition INTEGER, next_offset INTEGER NOT NULL,"
    " PRIMARY KEY (topic, partition))",
    "CREATE TABLE {p}___applied (aggregate_id TEXT PRIMARY KEY, version INTEGER NOT NULL)",
    "CREATE TABLE {p}___dead_letters (id INTEGER PRIMARY KEY, event_id TEXT, topic TEXT,"
    " partition INTEGER, kafka_offset INTEGER, position INTEGER, aggregate_id TEXT,"
    " aggregate_version INTEGER, event_type TEXT, error TEXT, payload BLOB,"
    " at TEXT NOT NULL DEFAULT (datetime('now')))",
    "CREATE TABLE {p}___status (id INTEGER PRIMARY KEY, events INTEGER NOT NULL,"
    " last_event_at TEXT, last_position INTEGER NOT NULL, lag INTEGER, updated_at TEXT)",
    *REJECTED,
    "INSERT INTO {p}___status VALUES (1, 0, NULL, 0, NULL, datetime('now'), 0)",
)


def create_table(conn: sqlite3.Connection, prefix: str, spec: Table) -> None:
    columns = ", ".join(f"{ident(c.name)} {LITE_TYPES[c.type]}" for c in spec.columns)
    key = ", ".join(map(ident, spec.key))
    name = f"{prefix}__{spec.name}"
    conn.execute(f"CREATE TABLE {ident(name)} ({columns}, PRIMARY KEY ({key}))")
    for number, index in enumerate(spec.indexes):
        cols = ", ".join(map(ident, index))
        conn.execute(f"CREATE INDEX {ident(f'{name}_ix{number}')} ON {ident(name)} ({cols})")


def create_bookkeeping(conn: sqlite3.Connection, prefix: str) -> None:
    for statement in _BOOKKEEPING:
        conn.execute(statement.replace("{p}", prefix))


def read_status(conn: sqlite3.Connection, name: str, generation: int) -> Status:
    prefix = f"{name}_v{generation}"
    dead_letters, status = ident(f"{prefix}___dead_letters"), ident(f"{prefix}___status")
    events, last_event_at, last_position, lag, rejected, dead = conn.execute(
        f"SELECT events, last_event_at, last_position, lag, rejected,"
        f" (SELECT count(*) FROM {dead_letters}) FROM {status}"
    ).fetchone()
    last = None if last_event_at is None else datetime.fromisoformat(last_event_at)
    positions = SqliteSession(conn, prefix, ()).positions()
    return Status(name, generation, events, last, last_position, dead, positions, lag, rejected)


def lacking(conn: sqlite3.Connection, prefix: str) -> list[str]:
    """The statements of `REJECTED` the generation `prefix` lacks (an older version made
    it), `{p}` still in them; none if it has no `_status` (no such generation)."""
    if not _columns(conn, f"{prefix}___status"):
        return []
    alters = [
        statement
        for statement, (table, column, _) in zip(REJECTED[1:], _ADDED, strict=True)
        if column not in _columns(conn, f"{prefix}__{table}")
    ]
    return [REJECTED[0], *alters] if alters else []


def _columns(conn: sqlite3.Connection, table: str) -> set[str]:
    return {column[1] for column in conn.execute(f"PRAGMA table_info({ident(table)})")}
