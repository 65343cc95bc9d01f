"""The embedded event store's SQLite connections, with `secure_delete` on.

eventsourcing's `SQLiteFactory` opens its own connections, and `secure_delete` (SQLite
overwrites freed content with zeros instead of leaving it in free pages) is a setting
of each connection. This factory (`PERSISTENCE_MODULE`, see `services.event_store`)
is eventsourcing's, with a connection pool that turns it on for every connection. The
log holds personal data sealed and is never rewritten, so this is defence in depth:
the key store and the read models, whose rows erasure does overwrite, matter more.

I/O: none at import; the pool opens the SQLite file.
"""

from __future__ import annotations

from eventsourcing.sqlite import (
    SQLiteConnection,
    SQLiteConnectionPool,
    SQLiteFactory,
)
from eventsourcing.utils import Environment, EnvType


class SecureDeletePool(SQLiteConnectionPool):
    def _create_connection(self) -> SQLiteConnection:
        connection = super()._create_connection()
        connection._sqlite_conn.execute("PRAGMA secure_delete = ON")
        return connection


class SecureDeleteFactory(SQLiteFactory):
    """`SQLiteFactory` whose datastore's connections run with `secure_delete`."""

    def __init__(self, env: Environment | EnvType | None) -> None:
        super().__init__(env)
        plain = self.datastore.pool  # no connection opened yet
        self.datastore.pool = SecureDeletePool(
            db_name=plain.db_name, lock_timeout=plain.lock_timeout
        )
        plain.close()
