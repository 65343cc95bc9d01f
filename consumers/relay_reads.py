"""The relay's reads of the event log, each waiting for a lock a bounded time.

The relay reads `crm_events` a page at a time (`select_notifications_within`) and asks
for its head (`max_notification_id`, also for `crm relay status` and `/metrics`). On
the event store's recorder those reads wait for a lock as long as it is held: a `LOCK
TABLE crm_events` (ACCESS EXCLUSIVE: a migration, a session left open) held the relay's
page read, its health row said nothing, and SIGTERM waited with it. Here each read is
one transaction whose lock waits end after `consumers.pg_lock_wait.LOCK_TIMEOUT_S`
(`bounded`): `LockWaitTimedOut` names the lock and who holds it, and the relay reports
it, tries again in its loop, and stops promptly when asked, as for its position row
(`consumers.relay_trouble`). The page is read afresh from the same position, so
nothing is skipped.

The statement is the recorder's page read (`consumers.byte_pages`), run on a
connection of the recorder's own pool. A recorder without a PostgreSQL events table
(SQLite's, whose busy wait is bounded already; the unit tests' fakes) is used as it is
(`bounded_log`).

I/O: PostgreSQL, through the event store's pool.
"""

from __future__ import annotations

from typing import Any

from eventsourcing.persistence import Notification
from psycopg.rows import tuple_row
from psycopg.sql import SQL, Identifier

from consumers.byte_pages import notifications_within, within_params
from consumers.pg_lock_wait import bounded


class BoundedLog:
    """The reads the relay makes of a PostgreSQL recorder's events table, bounded."""

    def __init__(self, recorder: Any) -> None:
        self._datastore = recorder.datastore
        table = recorder.events_table
        self._relations = [f"{self._datastore.schema}.{recorder.events_table_name}"]
        self._page = (
            SQL(notifications_within("postgresql", "{table}", "notification_id", "%s"))
            .format(table=table)
            .as_bytes()
        )
        self._head = SQL("SELECT max(notification_id) FROM {}").format(table).as_bytes()

    def select_notifications_within(
        self, start: int, limit: int, max_bytes: int
    ) -> list[Notification]:
        """The recorder's page from `start` (at most `limit` rows, cut at `max_bytes`)."""
        rows = self._rows(
            f"notifications after {start - 1} not read", self._page,
            within_params(start, limit, max_bytes),
        )  # fmt: skip
        return [
            Notification(
                id=id_, originator_id=originator, originator_version=version,
                topic=topic, state=state,
            )
            for id_, originator, version, topic, state in rows
        ]  # fmt: skip

    def max_notification_id(self) -> int | None:
        """The head of the log (None while it is empty)."""
        head = self._rows("head of the log not read", self._head, ())[0][0]
        return None if head is None else int(head)

    def _rows(self, what: str, statement: bytes, params: tuple[int, ...]) -> list[Any]:
        with (
            self._datastore.get_connection() as conn,
            bounded(conn, what, self._relations),
            conn.cursor(binary=True, row_factory=tuple_row) as cursor,
        ):
            cursor.execute(statement, params, prepare=True)
            rows: list[Any] = cursor.fetchall()
            return rows


def bounded_log(recorder: Any) -> Any:
    """`recorder`'s reads for the relay: a `BoundedLog` on PostgreSQL's (the one with
    an `events_table` identifier), else the recorder itself."""
    if isinstance(getattr(recorder, "events_table", None), Identifier):
        return BoundedLog(recorder)
    return recorder
