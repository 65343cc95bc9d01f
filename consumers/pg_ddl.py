"""Creating tables when several processes start at once.

`CREATE TABLE IF NOT EXISTS` is not safe against a concurrent twin: two processes that
start together (`crm api`, `crm relay`, `crm consume ...`) can both find the table
missing, and the second fails with a unique violation on `pg_type`. Every process
therefore creates its tables holding one lock (`creation_lock`), released with its
transaction.

The lock is a table's (`crm_ddl_lock`, which holds nothing), not an advisory lock: any
role that can log in may take any advisory lock, and an analyst (`crm analysts grant`)
holding the one every process asked for as it started kept them all from starting
(`SELECT pg_advisory_lock(...)`, its id read from the source). `LOCK TABLE` needs a
privilege on the table, which only the service's role has. The lock table is itself created by the
first process, retried should a twin create it at the same instant (`_CREATED_BY_A_TWIN`).
I/O: PostgreSQL.
"""

from __future__ import annotations

from typing import Any, LiteralString

from psycopg import Connection
from psycopg.errors import DuplicateObject, DuplicateTable, UniqueViolation

LOCK_TABLE = "crm_ddl_lock"
_CREATE_LOCK_TABLE: LiteralString = "CREATE TABLE IF NOT EXISTS crm_ddl_lock ()"
_ATTEMPTS = 5
_CREATED_BY_A_TWIN = (UniqueViolation, DuplicateObject, DuplicateTable)
"""What `CREATE TABLE IF NOT EXISTS` raises when a twin creates the table at the same
instant: a unique violation on `pg_type`, or, depending on where the two meet, `type
"crm_ddl_lock" already exists` (seen in CI, 1 of 18 concurrent creators) or the table's."""


def create_tables(conn: Connection[Any], *statements: LiteralString) -> None:
    """Run `CREATE ... IF NOT EXISTS` statements in one transaction, holding the lock."""
    with conn.transaction():
        creation_lock(conn)
        for statement in statements:
            conn.execute(statement)


def creation_lock(conn: Connection[Any]) -> None:
    """In a transaction of `conn`: wait until no other process creates tables, then keep
    them waiting until the transaction ends."""
    for attempt in range(_ATTEMPTS):
        try:
            with conn.transaction():  # a savepoint inside the caller's transaction
                conn.execute(_CREATE_LOCK_TABLE)
            break
        except _CREATED_BY_A_TWIN:  # it exists now
            if attempt == _ATTEMPTS - 1:
                raise
    conn.execute("LOCK TABLE crm_ddl_lock IN EXCLUSIVE MODE")
