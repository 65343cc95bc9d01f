"""Where one stored event stands in the notification log: its global position.

A command answers with the position of its last event (read-your-writes). An answer
given again for events stored earlier (an idempotent retry whose attempt died,
`services.idempotency_recovery`; an erasure finished after its event,
`services.erasure_command`) looks that position up by the event's aggregate and
version: one indexed row.
I/O: the event store's recorder (PostgreSQL or SQLite; the in-memory one of unit tests).
"""

from __future__ import annotations

from typing import Any
from uuid import UUID

from eventsourcing.popo import POPOApplicationRecorder
from eventsourcing.postgres import PostgresApplicationRecorder
from eventsourcing.sqlite import SQLiteApplicationRecorder
from psycopg.sql import SQL, Identifier


def event_position(recorder: object, originator_id: UUID, version: int) -> int:
    """The global position (notification id) of one stored event."""
    row: Any
    if isinstance(recorder, PostgresApplicationRecorder):
        statement = SQL(
            "SELECT notification_id FROM {}.{} WHERE originator_id = %s AND originator_version = %s"
        ).format(Identifier(recorder.datastore.schema), Identifier(recorder.events_table_name))
        with recorder.datastore.transaction(commit=False) as curs:
            row = curs.execute(statement, (originator_id, version)).fetchone()
    elif isinstance(recorder, SQLiteApplicationRecorder):
        table = '"' + recorder.events_table_name.replace('"', '""') + '"'
        with recorder.datastore.transaction(commit=False) as curs:
            curs.execute(
                f"SELECT rowid AS notification_id FROM {table}"
                " WHERE originator_id = ? AND originator_version = ?",
                (originator_id.hex, version),
            )
            row = curs.fetchone()
    elif isinstance(recorder, POPOApplicationRecorder):  # unit tests: a walk, not a query
        row = _popo_row(recorder, originator_id, version)
    else:
        raise NotImplementedError(f"no position lookup on {type(recorder).__name__}")
    if row is None:
        raise LookupError(f"no stored event {originator_id} v{version}")
    return int(row["notification_id"])


def _popo_row(
    recorder: POPOApplicationRecorder, originator_id: UUID, version: int
) -> dict[str, int] | None:
    head = recorder.max_notification_id() or 0
    for stored in recorder.select_notifications(None, limit=max(head, 1)):
        if stored.originator_id == originator_id and stored.originator_version == version:
            return {"notification_id": stored.id}
    return None
