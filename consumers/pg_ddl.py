"""Creating tables when several processes start at once.

`CREATE TABLE IF NOT EXISTS` is not safe against a concurrent twin: two processes that
start together (`crm api`, `crm relay`, `crm consume ...`) can both find the table
missing, and the second fails with a unique violation on `pg_type`. Every process
therefore creates its tables under one advisory lock, `CREATE_LOCK`.
I/O: PostgreSQL.
"""

from __future__ import annotations

from typing import Any, LiteralString

from psycopg import Connection

CREATE_LOCK = 0x63726D  # advisory lock id ("crm")


def create_tables(conn: Connection[Any], *statements: LiteralString) -> None:
    """Run `CREATE ... IF NOT EXISTS` statements in one transaction, under `CREATE_LOCK`."""
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (CREATE_LOCK,))
        for statement in statements:
            conn.execute(statement)
