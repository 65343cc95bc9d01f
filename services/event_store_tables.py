"""Creating the event store's PostgreSQL tables as a process starts.

Table creation is serialised by a table lock (`consumers.pg_ddl`), since concurrent
`CREATE TABLE`s from several processes crash one of them.

No statement waits for a lock on an existing events table. eventsourcing's
`CREATE UNIQUE INDEX IF NOT EXISTS <notification index> ON <events table>` asks for a
SHARE lock on the table before it looks whether the index exists, so a `LOCK TABLE
crm_events` held by another session (an intruder's, a migration's) held every process
at its start, before its health row, and SIGTERM waited with it. The index is looked up
in the catalog first (`to_regclass`, no table lock) and its statement left out when it
exists. The recorders' other statements take no lock on an existing table (`CREATE
TABLE IF NOT EXISTS`, `CREATE TYPE`, `CREATE OR REPLACE FUNCTION`) and still run, so a
new release's functions replace the old ones as before; a new database is made whole.
I/O: PostgreSQL.
"""

from __future__ import annotations

from typing import Any, LiteralString

import psycopg
from eventsourcing.persistence import AggregateRecorder
from eventsourcing.postgres import PostgresApplicationRecorder, PostgresRecorder
from psycopg.sql import Identifier

from consumers.pg_ddl import creation_lock

_INDEX_FOUND: LiteralString = "SELECT to_regclass(format('%%I.%%I', %s::text, %s::text))"
"""The index's oid if it exists: a catalog lookup, which takes no lock on its table."""


def create_tables(database_url: str, *recorders: AggregateRecorder) -> None:
    """The recorders' tables, types, indexes and functions, those missing made; under
    the creation lock, held while the recorders create theirs on their own connections."""
    with psycopg.connect(database_url, autocommit=True) as conn, conn.transaction():
        creation_lock(conn)
        for recorder in recorders:
            if isinstance(recorder, PostgresRecorder):
                _skip_made_index(conn, recorder)
                recorder.create_table()


def _skip_made_index(conn: psycopg.Connection[Any], recorder: PostgresRecorder) -> None:
    """Leave the notification index's creation out of the recorder's `create_table`
    when the index exists (no other process makes it meanwhile: the creation lock)."""
    if not isinstance(recorder, PostgresApplicationRecorder):
        return  # an aggregate recorder (snapshots): no index of its own
    name = recorder.notification_id_index_name
    row = conn.execute(_INDEX_FOUND, (recorder.datastore.schema, name)).fetchone()
    if row is None or row[0] is None:
        return  # a new database: made as before
    index = f"INDEX IF NOT EXISTS {Identifier(name).as_string()} "
    recorder.sql_create_statements = [
        s for s in recorder.sql_create_statements if index not in s.as_string()
    ]
