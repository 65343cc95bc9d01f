"""The tables a PostgreSQL projection generation keeps beside its rows, and its status.

`_positions` (next offset per partition), `_applied` (last version per aggregate),
`_dead_letters`, `_status` (counters and progress) and `_rejected` (runs of rejected
records): created with the generation (`create_bookkeeping`), brought up to date on a
generation an older version made (`REJECTED`, `create_staging`), read for status
(`read_status`). `pg_session` writes them, batch by batch.

I/O: the psycopg connection passed in (DDL; `read_status` reads).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, LiteralString

from psycopg import Connection, sql

from consumers.pg_copy import create_staging_tables
from consumers.pg_session import PgSession
from consumers.pg_statements import q, rendered
from consumers.readmodel_store import Status
from projections.base import Table

RUN_COLUMNS: LiteralString = (
    "ALTER TABLE {}._rejected ADD COLUMN IF NOT EXISTS last_offset bigint,"
    " ADD COLUMN IF NOT EXISTS records bigint NOT NULL DEFAULT 1,"
    " ADD COLUMN IF NOT EXISTS last_at timestamptz"
)
"""What a `_rejected` row holds of a run (`consumers.rejected_runs`) besides its first
record's offset (`kafka_offset`) and time (`at`): absent from rows written one per
record (read as one record: `last_offset` NULL is `kafka_offset`)."""
REJECTED: tuple[LiteralString, ...] = (
    "CREATE TABLE IF NOT EXISTS {}._rejected (id bigserial PRIMARY KEY, topic text,"
    " partition integer, kafka_offset bigint, position bigint, reason text,"
    " at timestamptz NOT NULL DEFAULT now())",
    "ALTER TABLE {}._status ADD COLUMN IF NOT EXISTS rejected bigint NOT NULL DEFAULT 0",
    RUN_COLUMNS,
)
"""The rejected records (runs of them) and their count (`_status.rejected`: what status
reads, so that a forger's millions of records cost /readyz and /metrics no count).
Also run on the generations an older version created (`PostgresStore`, and
`create_staging` for those that have the count but not the runs' columns)."""
_BOOKKEEPING = (
    "CREATE TABLE {}._positions (topic text, partition integer, next_offset bigint NOT NULL,"
    " PRIMARY KEY (topic, partition))",
    "CREATE TABLE {}._applied (aggregate_id uuid PRIMARY KEY, version integer NOT NULL)",
    "CREATE TABLE {}._dead_letters (id bigserial PRIMARY KEY, event_id text, topic text,"
    " partition integer, kafka_offset bigint, position bigint, aggregate_id uuid,"
    " aggregate_version integer, event_type text, error text, payload bytea,"
    " at timestamptz NOT NULL DEFAULT now())",
    "CREATE TABLE {}._status (id integer PRIMARY KEY, events bigint NOT NULL,"
    " last_event_at timestamptz, last_position bigint NOT NULL, lag bigint,"
    " updated_at timestamptz)",
    "INSERT INTO {}._status VALUES (1, 0, NULL, 0, NULL, now())",
    *REJECTED,
)
_HAS_RUNS = (
    "SELECT 1 FROM pg_attribute WHERE attrelid = to_regclass(quote_ident(%s) || '._rejected')"
    " AND attname = 'records' AND NOT attisdropped"
)
_WITH_RUNS: set[str] = set()
"""Schemas seen with the runs' columns, by this process."""


def create_bookkeeping(conn: Connection[Any], schema: str) -> None:
    for statement in _BOOKKEEPING:
        conn.execute(sql.SQL(statement).format(sql.Identifier(schema)))


def create_staging(conn: Connection[Any], schema: str, tables: Sequence[Table]) -> None:
    """The staging tables of every upsert target, and the runs' columns of `_rejected`
    on a generation made before them; call outside the batch's transaction."""
    create_staging_tables(conn, schema, [*(t.name for t in tables), "_applied"])
    _add_run_columns(conn, schema)


def _add_run_columns(conn: Connection[Any], schema: str) -> None:
    """Once per process and schema: `PostgresStore` upgrades only the generations that
    lack the count (`REJECTED`), not those made with the count but without the runs."""
    if schema in _WITH_RUNS:
        return
    with conn.transaction():
        if conn.execute(_HAS_RUNS, (schema,)).fetchone() is None:
            for statement in REJECTED:
                conn.execute(rendered(statement, schema))
    _WITH_RUNS.add(schema)


def read_status(conn: Connection[Any], name: str, generation: int) -> Status:
    schema = f"{name}_v{generation}"
    row = conn.execute(
        sql.SQL(
            "SELECT events, last_event_at, last_position, lag, rejected,"
            " (SELECT count(*) FROM {}) FROM {}"
        ).format(q(schema, "_dead_letters"), q(schema, "_status"))
    ).fetchone()
    positions = PgSession(conn, schema).positions()
    assert row is not None
    events, last_event_at, last_position, lag, rejected, dead = row
    return Status(
        name, generation, events, last_event_at, last_position, dead, positions, lag, rejected
    )
