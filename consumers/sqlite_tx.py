"""SQLite's write transaction, as every SQLite store here takes it.

I/O: the connection given.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def immediate(conn: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    """`BEGIN IMMEDIATE` (the database's write lock, across processes, taken at once),
    committed when the block ends, rolled back if it raises, unless SQLite has ended the
    transaction itself (it does on e.g. SQLITE_FULL). `conn` runs in autocommit mode
    (`isolation_level=None`); callers sharing it between threads hold their own lock."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield conn
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")
