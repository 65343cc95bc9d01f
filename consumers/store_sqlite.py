"""Read models in one SQLite file (embedded mode): the same contract as PostgreSQL.

SQLite has no schemas, so a generation's tables are named `<name>_v<N>__<table>` and
the stable views `<name>__<table>`. UUIDs, instants (UTC ISO 8601, so they sort) and
decimals are stored as text and converted back by column type, so projections see
the same Python values as with PostgreSQL. One connection behind a lock: the
embedded follower and the HTTP handlers share it from several threads. It runs with
`secure_delete` (freed content is overwritten with zeros), and `after_erasure`
checkpoints the WAL and truncates it, so the rows an erasure blanked or deleted are
left in no file.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from functools import lru_cache, partial
from pathlib import Path
from typing import Any

from consumers.readmodel_store import ReadModelStore, Status, public_tables
from consumers.sqlite_session import SqliteSession
from consumers.sqlite_tables import create_bookkeeping, create_table, lacking, read_status
from consumers.sqlite_tx import immediate
from consumers.sqlite_values import from_sqlite, ident, placeholders, rows_of, to_sqlite
from projections.base import ColumnType, Projection, Row, Table

_REGISTRY = (
    "CREATE TABLE IF NOT EXISTS crm_projections (name TEXT PRIMARY KEY,"
    " live_generation INTEGER, newest_generation INTEGER NOT NULL DEFAULT 0,"
    " code_version INTEGER, switched_at TEXT)"
)


class SqliteStore:
    """`consumers.readmodel_store.ReadModelStore` on a SQLite file."""

    dialect = "sqlite"
    transient_errors: tuple[type[Exception], ...] = (sqlite3.OperationalError,)
    value_errors: tuple[type[Exception], ...] = ()

    def __init__(self, path: Path | str) -> None:
        self.path = path
        self.conn = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self.conn.execute("PRAGMA journal_mode=WAL")
        self.conn.execute("PRAGMA secure_delete = ON")
        self.conn.execute(_REGISTRY)
        self.lock = threading.RLock()
        self._upgrade_generations()

    def _upgrade_generations(self) -> None:
        """Give the live generations an older version created what this one writes
        (`sqlite_tables.REJECTED`), in a write transaction only when one lacks it."""
        live = self.conn.execute("SELECT name, live_generation FROM crm_projections").fetchall()
        prefixes = [f"{name}_v{generation}" for name, generation in live if generation]
        if not any(lacking(self.conn, prefix) for prefix in prefixes):
            return
        with self._transaction() as conn:
            for prefix in prefixes:
                for statement in lacking(conn, prefix):  # again: no other writer now
                    conn.execute(statement.replace("{p}", prefix))

    def close(self) -> None:
        self.conn.close()

    def opener(self) -> Callable[[], ReadModelStore]:
        return partial(SqliteStore, self.path)

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        with self.lock, immediate(self.conn) as conn:
            yield conn

    def live_generation(self, name: str) -> int | None:
        with self.lock:
            row = self.conn.execute(
                "SELECT live_generation FROM crm_projections WHERE name = ?", (name,)
            ).fetchone()
        return None if row is None else row[0]

    def install(self, projection: Projection) -> int:
        with self._transaction():
            live = self.live_generation(projection.name)
            if live is None:
                live = self._create(projection)
                self._switch(projection, live)
        return live

    def create_generation(self, projection: Projection) -> int:
        with self._transaction():
            return self._create(projection)

    def switch(self, projection: Projection, generation: int) -> None:
        with self._transaction():
            old = self.live_generation(projection.name)
            self._switch(projection, generation)
            if old is not None and old != generation:
                self._drop(projection.name, old)

    def drop_generation(self, name: str, generation: int) -> None:
        with self._transaction():
            self._drop(name, generation)

    @contextmanager
    def session(self, projection: Projection, generation: int) -> Iterator[SqliteSession]:
        with self._transaction() as conn:
            yield SqliteSession(conn, f"{projection.name}_v{generation}", projection.tables)

    def status(self, name: str, generation: int | None = None) -> Status:
        generation = self.live_generation(name) if generation is None else generation
        if generation is None:
            return Status(name, None, 0, None, 0, 0, {})
        with self.lock:
            return read_status(self.conn, name, generation)

    def fetch(
        self,
        query: str,
        tables: dict[str, str],
        params: dict[str, Any],
        types: Mapping[str, ColumnType] | None = None,
    ) -> list[Row]:
        text = _statement(query, tuple(tables.items()))
        with self.lock:
            cursor = self.conn.execute(text, {k: to_sqlite(v) for k, v in params.items()})
            columns = [d[0] for d in cursor.description]
            rows = cursor.fetchall()
        return rows_of(columns, [(types or {}).get(column) for column in columns], rows)

    def dump(self, name: str, generation: int, table: Table) -> list[Row]:
        target = ident(f"{name}_v{generation}__{table.name}")
        order = ", ".join(map(ident, table.key))
        with self.lock:
            rows = self.conn.execute(f"SELECT * FROM {target} ORDER BY {order}").fetchall()
        return from_sqlite(table, rows)

    def after_erasure(self) -> None:
        with self.lock:
            self.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")

    def _create(self, projection: Projection) -> int:
        self.conn.execute(
            "INSERT INTO crm_projections (name, newest_generation) VALUES (?, 1)"
            " ON CONFLICT (name) DO UPDATE SET newest_generation = newest_generation + 1",
            (projection.name,),
        )
        row = self.conn.execute(
            "SELECT newest_generation FROM crm_projections WHERE name = ?", (projection.name,)
        ).fetchone()
        prefix = f"{projection.name}_v{row[0]}"
        for spec in projection.tables:
            create_table(self.conn, prefix, spec)
        create_bookkeeping(self.conn, prefix)
        return int(row[0])

    def _switch(self, projection: Projection, generation: int) -> None:
        for spec in public_tables(projection):
            view = ident(f"{projection.name}__{spec.name}")
            source = ident(f"{projection.name}_v{generation}__{spec.name}")
            self.conn.execute(f"DROP VIEW IF EXISTS {view}")
            self.conn.execute(f"CREATE VIEW {view} AS SELECT * FROM {source}")
        self.conn.execute(
            "UPDATE crm_projections SET live_generation = ?, code_version = ?,"
            " switched_at = datetime('now') WHERE name = ?",
            (generation, projection.version, projection.name),
        )

    def _drop(self, name: str, generation: int) -> None:
        prefix = f"{name}_v{generation}__"
        tables = self.conn.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND substr(name, 1, ?) = ?",
            (len(prefix), prefix),
        ).fetchall()
        for (table,) in tables:
            self.conn.execute(f"DROP TABLE {ident(table)}")


@lru_cache(maxsize=1024)
def _statement(query: str, tables: tuple[tuple[str, str], ...]) -> str:
    """A read-model query in SQLite's terms: views named `projection__table`, `:name`
    parameters (a regular expression each time cost a statistics answer ~5 us)."""
    return placeholders(query.format(**{k: ident(v.replace(".", "__")) for k, v in tables}))
