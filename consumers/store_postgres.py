"""Read models in PostgreSQL: schema `<name>_v<N>` per generation, views in `<name>`.

Bulk I/O only: rows a batch needs are loaded with one `unnest` join per table and
written with one binary COPY into a staging table plus one `INSERT ... ON CONFLICT`
per table and kind of change (`consumers.pg_copy`), so a batch of thousands of
events costs a handful of round trips.
Every statement is composed with `psycopg.sql`; types come from a fixed mapping.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from functools import partial
from typing import Any, LiteralString

import psycopg
from psycopg import Connection, errors, sql
from psycopg_pool import PoolTimeout

from consumers import analysts, pg_bookkeeping
from consumers.pg_ddl import create_tables
from consumers.pg_lock_wait import PATIENCE_S, patiently
from consumers.pg_pool import open_pool
from consumers.pg_session import PgSession
from consumers.pg_statements import column_defs, q
from consumers.pg_times import edge_cursor
from consumers.readmodel_store import (
    ReadModelNotBuilt,
    ReadModelStore,
    Status,
    analyst_views,
    public_tables,
)
from projections.base import ColumnType, Projection, Row, Table

_REGISTRY = """
CREATE TABLE IF NOT EXISTS crm_projections (
    name text PRIMARY KEY,
    live_generation integer,
    newest_generation integer NOT NULL DEFAULT 0,
    code_version integer,
    switched_at timestamptz
)"""
_GENERATIONS_LOCK: LiteralString = "LOCK TABLE crm_projections IN SHARE ROW EXCLUSIVE MODE"
"""Generation changes take turns (the mode conflicts with itself; reads go on). A table's
lock, not an advisory one, which any role that can log in (an analyst) could hold."""


class PostgresStore:
    """`consumers.readmodel_store.ReadModelStore` on a psycopg pool."""

    dialect = "postgresql"
    transient_errors: tuple[type[Exception], ...] = (
        psycopg.OperationalError,  # connection lost, disk full, deadlock, shutdown...
        psycopg.InterfaceError,
        psycopg.InternalError,
        psycopg.ProgrammingError,  # e.g. the generation's schema dropped by a switch
        PoolTimeout,
    )
    """Not the value errors (`DataError`, `IntegrityError`...): those are an event's
    fault, and `consumers.batch_commit.commit` dead-letters the event."""
    value_errors: tuple[type[Exception], ...] = (
        errors.ProgramLimitExceeded,  # class 54: a value beyond a limit (an index entry)
        errors.StatementTooComplex,
        errors.TooManyColumns,
        errors.TooManyArguments,
    )
    """`OperationalError`s all the same, but an event's fault: a text of 8 kB in an indexed
    column fails on every retry, and the projection stopped for good behind it."""

    def __init__(self, database_url: str, max_size: int = 4) -> None:
        self.database_url = database_url
        self.lock_patience = PATIENCE_S
        """How long a switch waits for locks others hold before `LocksHeld`."""
        self.pool = open_pool(
            database_url, max_size=max_size, kwargs={"options": "-c timezone=UTC"}
        )
        with self.pool.connection() as conn:
            create_tables(conn, _REGISTRY)
            _upgrade_generations(conn)

    def close(self) -> None:
        self.pool.close()

    def opener(self) -> Callable[[], ReadModelStore]:
        return partial(PostgresStore, self.database_url, max_size=2)

    def live_generation(self, name: str) -> int | None:
        with self.pool.connection() as conn:
            row = conn.execute(
                "SELECT live_generation FROM crm_projections WHERE name = %s", (name,)
            ).fetchone()
        return None if row is None else row[0]

    def install(self, projection: Projection) -> int:
        """The live generation, creating the first one (and its views) if there is none."""
        live = self.live_generation(projection.name)
        if live is not None:
            return live
        return patiently(self.pool, projection.name, partial(self._install, projection),
                         self.lock_patience)  # fmt: skip

    def create_generation(self, projection: Projection) -> int:
        with self.pool.connection() as conn, conn.transaction():
            conn.execute(_GENERATIONS_LOCK)
            return self._create(conn, projection)

    def switch(self, projection: Projection, generation: int) -> None:
        """Repoint the stable views at `generation` and drop the old one, atomically,
        waiting for sessions that hold their locks without queueing readers behind it
        for longer than `consumers.pg_lock_wait.LOCK_TIMEOUT_S` (`LocksHeld` after
        `lock_patience` seconds, nothing switched).
        The new generation's tables are analyzed first: a rebuild fills them faster than
        autovacuum looks, and without statistics PostgreSQL plans a department page as a
        join of the whole department and a sort (2.1 ms instead of 0.2 ms at 640
        customers, and growing with the department)."""
        with self.pool.connection() as conn:
            for spec in projection.tables:
                conn.execute(
                    sql.SQL("ANALYZE {}").format(q(_schema(projection.name, generation), spec.name))
                )
        switch = partial(self._switch_to, projection, generation)
        patiently(self.pool, projection.name, switch, self.lock_patience)

    def drop_generation(self, name: str, generation: int) -> None:
        with self.pool.connection() as conn, conn.transaction():
            _drop_schema(conn, name, generation)

    @contextmanager
    def session(self, projection: Projection, generation: int) -> Iterator[PgSession]:
        schema = _schema(projection.name, generation)
        with self.pool.connection() as conn:
            pg_bookkeeping.create_staging(conn, schema, projection.tables)
            with conn.transaction():
                yield PgSession(conn, schema, projection.tables)

    def status(self, name: str, generation: int | None = None) -> Status:
        generation = self.live_generation(name) if generation is None else generation
        if generation is None:
            return Status(name, None, 0, None, 0, 0, {})
        with self.pool.connection() as conn:
            return pg_bookkeeping.read_status(conn, name, generation)

    def fetch(
        self,
        query: str,
        tables: dict[str, str],
        params: dict[str, Any],
        types: Mapping[str, ColumnType] | None = None,
    ) -> list[Row]:
        """`types` changes nothing here: psycopg gives every column its Python type."""
        names = {k: sql.Identifier(*v.split(".")) for k, v in tables.items()}
        with self.pool.connection() as conn, edge_cursor(conn) as cur:
            try:
                cur.execute(sql.SQL(query).format(**names), params)
            except psycopg.errors.UndefinedTable as error:
                raise ReadModelNotBuilt(tables) from error
            return cur.fetchall()

    def dump(self, name: str, generation: int, table: Table) -> list[Row]:
        statement = sql.SQL("SELECT * FROM {} ORDER BY {}").format(
            q(_schema(name, generation), table.name),
            sql.SQL(", ").join(map(sql.Identifier, table.key)),
        )
        with self.pool.connection() as conn, edge_cursor(conn) as cur:
            return cur.execute(statement).fetchall()

    def after_erasure(self) -> None:
        """Nothing a store can do: old row versions stay in dead tuples until vacuumed
        and in the WAL until recycled (README, "Erasure on PostgreSQL"). They hold only
        sealed values, whose key the erasure destroyed."""

    def _install(self, projection: Projection, conn: Connection[Any]) -> int:
        conn.execute(_GENERATIONS_LOCK)
        live = self._live(conn, projection.name)
        if live is None:
            live = self._create(conn, projection)
            self._switch(conn, projection, live)
        return live

    def _switch_to(self, projection: Projection, generation: int, conn: Connection[Any]) -> None:
        conn.execute(_GENERATIONS_LOCK)
        old = self._live(conn, projection.name)
        self._switch(conn, projection, generation)
        if old is not None and old != generation:
            _drop_schema(conn, projection.name, old)

    def _live(self, conn: Connection[Any], name: str) -> int | None:
        row = conn.execute(
            "SELECT live_generation FROM crm_projections WHERE name = %s FOR UPDATE", (name,)
        ).fetchone()
        return None if row is None else row[0]

    def _create(self, conn: Connection[Any], projection: Projection) -> int:
        row = conn.execute(
            "INSERT INTO crm_projections (name, newest_generation) VALUES (%s, 1)"
            " ON CONFLICT (name) DO UPDATE"
            " SET newest_generation = crm_projections.newest_generation + 1"
            " RETURNING newest_generation",
            (projection.name,),
        ).fetchone()
        assert row is not None
        schema = _schema(projection.name, row[0])
        conn.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(schema)))
        for spec in projection.tables:
            _create_table(conn, schema, spec)
        pg_bookkeeping.create_bookkeeping(conn, schema)
        return int(row[0])

    def _switch(self, conn: Connection[Any], projection: Projection, generation: int) -> None:
        name, schema = projection.name, _schema(projection.name, generation)
        conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(name)))
        conn.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(name)))
        for spec in public_tables(projection):
            conn.execute(
                sql.SQL("CREATE VIEW {} AS SELECT * FROM {}").format(
                    q(name, spec.name), q(schema, spec.name)
                )
            )
        analysts.grant_views(conn, name, analyst_views(projection))
        conn.execute(
            "UPDATE crm_projections SET live_generation = %s, code_version = %s,"
            " switched_at = now() WHERE name = %s",
            (generation, projection.version, name),
        )


def _schema(name: str, generation: int) -> str:
    """The schema holding one generation of a projection's tables."""
    return f"{name}_v{generation}"


def _create_table(conn: Connection[Any], schema: str, spec: Table) -> None:
    conn.execute(
        sql.SQL("CREATE TABLE {} ({}, PRIMARY KEY ({}))").format(
            q(schema, spec.name),
            column_defs(spec),
            sql.SQL(", ").join(map(sql.Identifier, spec.key)),
        )
    )
    for number, columns in enumerate(spec.indexes):
        conn.execute(
            sql.SQL("CREATE INDEX {} ON {} ({})").format(
                sql.Identifier(f"{spec.name}_ix{number}"),
                q(schema, spec.name),
                sql.SQL(", ").join(map(sql.Identifier, columns)),
            )
        )


def _drop_schema(conn: Connection[Any], name: str, generation: int) -> None:
    schema = sql.Identifier(_schema(name, generation))
    conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(schema))


def generations(conn: Connection[Any], name: str) -> Sequence[int]:
    """Every generation schema of `name` present (live, building or abandoned)."""
    rows = conn.execute(
        "SELECT nspname FROM pg_namespace WHERE nspname LIKE %s", (f"{name}\\_v%",)
    ).fetchall()
    return sorted(int(r[0].rsplit("_v", 1)[1]) for r in rows)


_OUTDATED = (
    "SELECT name, live_generation FROM crm_projections WHERE live_generation IS NOT NULL"
    " AND NOT EXISTS (SELECT 1 FROM pg_attribute WHERE attname = 'rejected' AND NOT"
    " attisdropped AND attrelid = to_regclass(quote_ident(name || '_v' || live_generation)"
    " || '._status'))"
)
"""The live generations an older version created: without what `pg_bookkeeping.REJECTED`
adds (told by the column it adds to `_status`)."""


def _upgrade_generations(conn: Connection[Any]) -> None:
    """Give the live generations an older version created what this one writes (under
    the generations lock, and only when one lacks it: no generation changes meanwhile,
    and no twin adds it)."""
    with conn.transaction():
        if not conn.execute(_OUTDATED).fetchone():
            return
        conn.execute(_GENERATIONS_LOCK)
        for name, generation in conn.execute(_OUTDATED).fetchall():
            for statement in pg_bookkeeping.REJECTED:
                conn.execute(sql.SQL(statement).format(sql.Identifier(_schema(name, generation))))
