"""The event store's PostgreSQL insert path: one statement, one round trip per batch.

eventsourcing 9.5.6 saves a batch as a pipelined BEGIN / SET LOCAL lock_timeout /
LOCK TABLE ... IN EXCLUSIVE MODE / NOTIFY / INSERT ... unnest(composite[]) / COMMIT,
which costs ~0.7 ms of Python (psycopg pipeline machinery) per transaction and several
round trips; composite arrays are also dumped as text, element by element, in Python.

Here the same statements run inside one plpgsql function, called in autocommit mode with
five binary arrays (ids, versions, topics, states, data subjects). The guarantees are
the stock ones: the EXCLUSIVE table lock is taken before any notification id is drawn
and is held until the implicit transaction commits, so notification ids stay in commit
order for the relay (unlike `POSTGRES_ENABLE_DB_FUNCTIONS`, whose function takes no
lock), the NOTIFY is sent on commit, and a duplicate (originator_id, originator_version) raises
`eventsourcing.persistence.IntegrityError` with nothing of the batch stored. Unlike the
stock insert, a duplicate is found before any notification id is drawn (under the same
lock, so nobody inserts meanwhile): a race lost between API processes leaves no gap in
the positions (only a failure after the insert, such as a lost connection, still can),
and the error names the aggregates whose versions were taken (`BatchConflictError`), so
that group commit saves the rest of the batch together.

Under the same lock, a batch's events about an erased customer are refused
(`ErasedSubjectError`, nothing of the batch stored, the error naming their aggregates):
each event is sent with its data subject (`DomainEvent.data_subject`, the customer whose
key seals it, read from its stored state by `insert_columns`), and a customer is erased
when its newest stored event is its `CustomerErased` (nothing is stored after one), or
when one comes earlier in the batch.
An API process learns of another's erasure only by its erasure watch, up to half a
second later; the lock makes the refusal exact whichever process erased, for the one
indexed look-up per customer of the batch (the events' primary key, newest version).
The key store is not asked: a destroyed key implies a stored erasure (a key is destroyed
only once its `CustomerErased` is durable), while an erasure owed may be one whose save
failed, whose customer is not erased. (A database made by an earlier release keeps its
four-array function beside this one, for its processes still running.)

The same function extends the hash chain (`domain.hashchain`, `docs/audit.md`) for the
whole batch, under that lock and in that transaction: one SELECT of the chain's head, the
links computed in the insert's loop (the canonical bytes built by `CANONICAL_SQL` from
the inserted row), and one INSERT of the batch's rows into `<events table>_chain`
(position, previous position, chain). The chain lives in its own table because
eventsourcing owns the events table's schema. Any other write to the events table leaves
events without links, which `crm audit verify` reports as inserted.

Selected by `APPLICATION_RECORDER_TOPIC` (see `services.event_store.store_env`); the
function is created with the tables (`CREATE OR REPLACE`, under the creation lock), so
its lock timeout is the `POSTGRES_LOCK_TIMEOUT` of the process that last opened the store.

`AsyncBatchWriter` makes the same call over a psycopg `AsyncConnection`, awaited on an
event loop: group commit uses it so that a batch costs no thread hand-offs.
I/O: PostgreSQL.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any, LiteralString
from uuid import UUID

import psycopg
from eventsourcing.persistence import (
    IntegrityError,
    InterfaceError,
    Notification,
    OperationalError,
    StoredEvent,
)
from eventsourcing.postgres import PostgresApplicationRecorder, PostgresDatastore
from eventsourcing.utils import retry
from psycopg.rows import tuple_row
from psycopg.sql import SQL, Composed, Identifier, Literal

from consumers.byte_pages import notifications_within, within_params
from domain.codec import SubjectStoredEvent
from domain.customer import CustomerErased
from services.batch_refusals import (
    BatchConflictError,
    CommitUnknownError,
    ErasedSubjectError,
    StoreRefusedError,
    data_subject,
)

CANONICAL_SQL: LiteralString = (
    "int8send(notification_id) || uuid_send(originator_id) || int8send(originator_version)"
    " || int4send(octet_length(convert_to(topic, 'UTF8'))) || convert_to(topic, 'UTF8')"
    " || int4send(octet_length(state)) || state"
)
"""`domain.hashchain.canonical_event` of a row of the events table, in SQL."""
ERASED_STATE = "CRM01"
"""The SQLSTATE of a batch refused for events about an erased customer (`ErasedSubjectError`):
a class of its own, neither an integrity error (a lost race, decided again) nor another."""

_FUNCTION = """\
CREATE OR REPLACE FUNCTION {schema}.{function}(
    ids uuid[], versions bigint[], topics text[], states bytea[], subjects uuid[]
) RETURNS SETOF bigint LANGUAGE plpgsql AS $body$
DECLARE
    head_position bigint;
    head bytea;
    positions bigint[] := '{{}}';
    previous bigint[] := '{{}}';
    chains bytea[] := '{{}}';
    inserted record;
    taken text;
    refused text;
BEGIN
    SET LOCAL lock_timeout = '{lock_timeout}s';
    LOCK TABLE {schema}.{table} IN EXCLUSIVE MODE;
    IF EXISTS (
        SELECT FROM {schema}.{table} t JOIN unnest(ids, versions) AS n(id, version)
            ON t.originator_id = n.id AND t.originator_version = n.version
    ) THEN  -- a lost race, refused before any position is drawn: positions stay gap-free
        -- (named by a second look only now: the common path runs the EXISTS alone)
        SELECT string_agg(DISTINCT n.id::text, ',') INTO taken
            FROM {schema}.{table} t JOIN unnest(ids, versions) AS n(id, version)
            ON t.originator_id = n.id AND t.originator_version = n.version;
        RAISE unique_violation USING MESSAGE = 'an event of this batch is stored already',
            DETAIL = taken;  -- the aggregates whose versions are taken: `BatchConflictError`
    END IF;
    WITH erasures AS MATERIALIZED (  -- this batch's, if any: scanned once, not per event
        SELECT e.id, e.n FROM unnest(ids, topics) WITH ORDINALITY AS e(id, topic, n)
        WHERE starts_with(e.topic, {erased})
    )
    SELECT string_agg(b.id::text, ',') INTO refused
        FROM unnest(ids, subjects) WITH ORDINALITY AS b(id, subject, n)
        WHERE starts_with((  -- the subject's newest stored event is its erasure
            SELECT t.topic FROM {schema}.{table} t WHERE t.originator_id = b.subject
            ORDER BY t.originator_version DESC LIMIT 1), {erased})
        OR EXISTS (SELECT FROM erasures e WHERE e.id = b.subject AND e.n < b.n);
    IF refused IS NOT NULL THEN
        RAISE EXCEPTION USING ERRCODE = {erased_state}, DETAIL = refused,
            MESSAGE = 'an event of this batch is about an erased customer';
    END IF;
    NOTIFY {channel};
    SELECT position, chain INTO head_position, head
        FROM {schema}.{chain} ORDER BY position DESC LIMIT 1;
    IF NOT FOUND THEN
        head_position := 0;
        head := decode(repeat('00', 32), 'hex');
    END IF;
    FOR inserted IN
        INSERT INTO {schema}.{table} (originator_id, originator_version, topic, state)
        SELECT * FROM unnest(ids, versions, topics, states)
        RETURNING notification_id, {canonical} AS canonical
    LOOP
        head := sha256(head || inserted.canonical);
        positions := positions || inserted.notification_id;
        previous := previous || head_position;
        chains := chains || head;
        head_position := inserted.notification_id;
    END LOOP;
    INSERT INTO {schema}.{chain} (position, previous, chain)
        SELECT * FROM unnest(positions, previous, chains);
    RETURN QUERY SELECT unnest(positions);
END
$body$"""

_CHAIN_TABLE = """\
CREATE TABLE IF NOT EXISTS {schema}.{chain} (
    position bigint PRIMARY KEY, previous bigint NOT NULL, chain bytea NOT NULL
)"""

_CHECKPOINTS_TABLE = """\
CREATE TABLE IF NOT EXISTS {schema}.{checkpoints} (
    position bigint PRIMARY KEY,
    checkpoint bytea NOT NULL,
    frontier bytea NOT NULL,
    published boolean NOT NULL DEFAULT false
)"""


class BatchInsertRecorder(PostgresApplicationRecorder):
    """`PostgresApplicationRecorder` whose `insert_events` is one locked function call,
    and whose plain `select_notifications` fetches binary tuples: ~4 us an event instead
    of ~13 us with the stock text rows and dicts; so does `select_notifications_within`,
    the relay's and the follower's page read, bounded in bytes."""

    def __init__(
        self, datastore: PostgresDatastore, *, events_table_name: str = "stored_events"
    ) -> None:
        super().__init__(datastore, events_table_name=events_table_name)
        schema = Identifier(datastore.schema)
        function = Identifier(f"{events_table_name}_insert_locked")
        self.events_table = Identifier(datastore.schema, events_table_name)
        self.chain_table = Identifier(datastore.schema, f"{events_table_name}_chain")
        self.checkpoints_table = Identifier(datastore.schema, f"{events_table_name}_checkpoints")
        """Qualified names, for `services.audit_log_pg`."""
        self.sql_create_statements += self._audit_statements(function)
        # Both statements are composed to bytes once, not at every call.
        self._select_page = (
            SQL(
                "SELECT notification_id, originator_id, originator_version, topic, state"
                " FROM {schema}.{table} WHERE notification_id >= %s"
                " ORDER BY notification_id LIMIT %s"
            )
            .format(schema=schema, table=Identifier(events_table_name))
            .as_bytes()
        )
        self._select_within = (
            SQL(notifications_within("postgresql", "{table}", "notification_id", "%s"))
            .format(table=self.events_table)
            .as_bytes()
        )
        self.insert_statement = (
            SQL(
                "SELECT notification_id FROM {schema}.{function}(%b, %b, %b, %b, %b)"
                " AS notification_id"
            )
            .format(schema=schema, function=function)
            .as_bytes()
        )
        """The locked insert: five binary arrays (`insert_columns`) in, notification ids out."""
        self.stored_statement = (
            SQL(
                "SELECT e.notification_id, e.topic = b.topic AND e.state = b.state"
                " FROM unnest(%b::uuid[], %b::bigint[], %b::text[], %b::bytea[])"
                " WITH ORDINALITY AS b(id, version, topic, state, n)"
                " LEFT JOIN {schema}.{table} e"
                " ON e.originator_id = b.id AND e.originator_version = b.version ORDER BY b.n"
            )
            .format(schema=schema, table=Identifier(events_table_name))
            .as_bytes()
        )
        """A batch as stored, if it is (`insert_columns` but the subjects in): each event's
        notification id, and whether the stored one is that very event (topic and state,
        byte for byte)."""

    def _audit_statements(self, function: Identifier) -> list[Composed]:
        """The chain and checkpoint tables, and the locked insert that chains."""
        names = {
            "schema": Identifier(self.datastore.schema),
            "table": Identifier(self.events_table_name),
            "chain": Identifier(f"{self.events_table_name}_chain"),
            "checkpoints": Identifier(f"{self.events_table_name}_checkpoints"),
        }
        return [
            SQL(_CHAIN_TABLE).format(**names),
            SQL(_CHECKPOINTS_TABLE).format(**names),
            SQL(_FUNCTION).format(
                **names,
                function=function,
                channel=Identifier(self.channel_name),
                lock_timeout=self.datastore.lock_timeout,
                canonical=SQL(CANONICAL_SQL),
                erased=Literal(f"{CustomerErased.wire_name()}@"),
                erased_state=Literal(ERASED_STATE),
            ),
        ]

    def insert_events(
        self, stored_events: Sequence[StoredEvent], **kwargs: Any
    ) -> Sequence[int] | None:
        """A duplicate version is `IntegrityError`, unless it is this very batch, stored
        by an attempt whose connection was lost during the commit (`@retry` then tried
        again): its positions are the answer, as `AsyncBatchWriter` gives them. An event
        about an erased customer is `ErasedSubjectError`."""
        if kwargs.get("tracking") is not None:
            raise NotImplementedError(
                "recording tracking with events: this application records none, and the"
                " stock insert would leave the events out of the hash chain"
            )
        if not stored_events:
            return []
        columns = insert_columns(stored_events)
        try:
            return [position for (position,) in self._run_batch(self.insert_statement, columns)]
        except IntegrityError:
            ids = stored_positions(self._run_batch(self.stored_statement, columns[:4]))
            if ids is None:
                raise
            return ids

    @retry((InterfaceError, OperationalError), max_attempts=10, wait=0.2)
    def _run_batch(self, statement: bytes, columns: tuple[list[Any], ...]) -> list[Any]:
        """`statement` (the insert, or the stored batch's query) on a pooled connection."""
        with (
            self.datastore.get_connection() as conn,
            conn.cursor(binary=True, row_factory=tuple_row) as curs,
        ):
            try:
                curs.execute(statement, columns, prepare=True)
            except psycopg.Error as error:  # the datastore would make it a DatabaseError
                if (refused := erased_subjects(error)) is not None:
                    raise refused from error
                raise
            return curs.fetchall()

    @retry((InterfaceError, OperationalError), max_attempts=10, wait=0.2)
    def select_notifications(
        self,
        start: int | None,
        limit: int,
        stop: int | None = None,
        topics: Sequence[str] = (),
        *,
        inclusive_of_start: bool = True,
    ) -> Sequence[Notification]:
        if stop is not None or topics:
            stock: Sequence[Notification] = super().select_notifications(
                start, limit, stop, topics, inclusive_of_start=inclusive_of_start
            )
            return stock
        first = 0 if start is None else start if inclusive_of_start else start + 1
        return self._notifications(self._select_page, (first, limit))

    @retry((InterfaceError, OperationalError), max_attempts=10, wait=0.2)
    def select_notifications_within(
        self, start: int, limit: int, max_bytes: int
    ) -> Sequence[Notification]:
        """`select_notifications(start, limit)` cut by bytes in the database: it stops at
        the notification whose state brings the page to `max_bytes` (`consumers.byte_pages`)."""
        return self._notifications(self._select_within, within_params(start, limit, max_bytes))

    def _notifications(self, statement: bytes, params: tuple[int, ...]) -> list[Notification]:
        with (
            self.datastore.get_connection() as conn,
            conn.cursor(binary=True, row_factory=tuple_row) as curs,
        ):
            curs.execute(statement, params, prepare=True)
            return [
                Notification(
                    id=id_,
                    originator_id=originator_id,
                    originator_version=version,
                    topic=topic,
                    state=state,
                )
                for id_, originator_id, version, topic, state in curs.fetchall()
            ]


def connect_kwargs(recorder: PostgresApplicationRecorder) -> dict[str, Any]:
    """How the event store's pool connects (its row factory aside), for own connections."""
    kwargs = recorder.datastore.pool.kwargs
    assert isinstance(kwargs, dict)  # eventsourcing passes its settings as a dict
    return {k: v for k, v in kwargs.items() if k != "row_factory"}


def insert_columns(stored_events: Sequence[StoredEvent]) -> tuple[list[Any], ...]:
    """The function's five arrays: ids, versions, topics, states, and the events' data
    subjects: as the codec that made a stored event knew it (`SubjectStoredEvent`), else
    read from its state (~12,000 instructions an event: every insert path names them,
    the stock `save()` too, by the one definition, `DomainEvent.data_subject`)."""
    return (
        [event.originator_id for event in stored_events],
        [event.originator_version for event in stored_events],
        [event.topic for event in stored_events],
        [event.state for event in stored_events],
        [subject_of(event) for event in stored_events],
    )


def subject_of(stored: StoredEvent) -> UUID:
    """The stored event's data subject (`batch_refusals.data_subject`)."""
    if isinstance(stored, SubjectStoredEvent):
        return stored.data_subject
    return data_subject(stored)


def batch_conflict(error: psycopg.IntegrityError) -> BatchConflictError:
    """A duplicate version the locked insert refused, naming the aggregates it listed."""
    try:
        taken = named_aggregates(error)
    except ValueError:  # not the locked insert's list: the stock unique index's detail
        taken = frozenset()
    return BatchConflictError(str(error), taken)


def erased_subjects(error: psycopg.Error) -> ErasedSubjectError | None:
    """The refusal `error` is, if it is the locked insert's (`ERASED_STATE`)."""
    if error.sqlstate != ERASED_STATE:
        return None
    return ErasedSubjectError(str(error), named_aggregates(error))


def named_aggregates(error: psycopg.Error) -> frozenset[UUID]:
    """The aggregate ids the locked insert listed in `error`'s detail."""
    detail = error.diag.message_detail or ""
    return frozenset(UUID(text) for text in detail.split(",") if text)


def stored_positions(rows: Sequence[tuple[int | None, bool | None]]) -> list[int] | None:
    """`stored_statement`'s rows: the batch's positions if that very batch is stored
    (every event found, with its topic and state), else None."""
    positions = [position for position, same in rows if same and position is not None]
    return positions if len(positions) == len(rows) else None


class AsyncBatchWriter:
    """`BatchInsertRecorder.insert_events` over one `AsyncConnection`, for one event loop.

    A writer thread costs two hand-offs per batch (queue the batch, wake the loop with
    the answer), each a thread wake-up: 0.5-0.8 ms per call measured on this VM against
    a ~1 ms insert of 16 events. Awaiting the socket on the loop costs neither. Errors
    are eventsourcing's, as from the recorder: a duplicate version is `IntegrityError`,
    an event about an erased customer `ErasedSubjectError`, any other error the server
    answered on a connection still open `StoreRefusedError` (a full disk, a lock
    timeout: at once, not retried; nothing of the batch stored in any of these); a lost
    connection is retried on a new one, like the recorder's `@retry`, and then raised as
    `OperationalError`, or `CommitUnknownError` when an attempt had sent the batch and
    lost its answer (it may have committed: after that, whatever a later attempt meets
    short of finding the batch stored leaves it unknown); a retry that finds the
    very batch stored (its commit happened, its answer was lost) answers its positions
    (`_stored`). Red team: a full disk was retried as a lost connection, ten times, then
    answered `outcome-unknown` and kept a keyed command's key for its lease. Its one
    cursor is kept for the connection's life: a cursor made per batch found its dumpers
    again each time (~18 us of Python a batch of 6 events).
    """

    ATTEMPTS = 10
    RETRY_WAIT = 0.2

    def __init__(self, recorder: BatchInsertRecorder) -> None:
        self._recorder = recorder
        self._conn: psycopg.AsyncConnection[Any] | None = None
        self._cursor: psycopg.AsyncCursor[Any] | None = None
        self._sent = False  # the batch went out on this attempt

    async def insert_events(self, stored_events: Sequence[StoredEvent]) -> list[int]:
        if not stored_events:
            return []
        columns = insert_columns(stored_events)
        lost = False  # an attempt sent the batch and lost its answer: it may have committed
        for attempt in range(1, self.ATTEMPTS + 1):
            self._sent = False
            try:
                try:
                    return await self._insert(columns)
                except psycopg.IntegrityError as error:
                    if attempt > 1 and (ids := await self._stored(columns)) is not None:
                        return ids  # the lost attempt had committed: only its answer was lost
                    raise batch_conflict(error) from error
            except (psycopg.OperationalError, psycopg.InterfaceError) as error:  # `_stored`'s too
                if not lost and self._answered(error):
                    raise StoreRefusedError(str(error), error.sqlstate) from error
                lost = lost or self._sent
                await self._discard()
                if attempt == self.ATTEMPTS:
                    raise (CommitUnknownError if lost else OperationalError)(str(error)) from error
                await asyncio.sleep(self.RETRY_WAIT)
            except psycopg.Error as error:
                if (refused := erased_subjects(error)) is not None:
                    raise refused from error
                if lost or not self._answered(error):
                    raise CommitUnknownError(str(error)) from error
                raise StoreRefusedError(str(error), error.sqlstate) from error
        raise AssertionError("unreachable: the last attempt returns or raises")

    def _answered(self, error: psycopg.Error) -> bool:
        """Whether the server answered `error` itself (a SQLSTATE it sent) on a connection
        still open: the autocommit call (its COMMIT too) did not commit, whatever it met,
        a full disk, a lock timeout, a failure at commit. An error without a SQLSTATE
        (the connection lost), or one that closed the connection (FATAL, PANIC), leaves
        the outcome of a batch sent to the server."""
        conn = self._conn
        return error.sqlstate is not None and conn is not None and not conn.closed

    async def _insert(self, columns: tuple[list[Any], ...]) -> list[int]:
        if self._cursor is None:  # a first batch, or the last connection was discarded
            timeout = max(1, round(self._recorder.datastore.pool.timeout))
            self._conn = await psycopg.AsyncConnection.connect(
                autocommit=True, connect_timeout=timeout, **connect_kwargs(self._recorder)
            )
            self._cursor = self._conn.cursor(binary=True)
        self._sent = True  # from here its outcome is the server's: lost unless it answers
        await self._cursor.execute(self._recorder.insert_statement, columns, prepare=True)
        return [row[0] for row in await self._cursor.fetchall()]

    async def _stored(self, columns: tuple[list[Any], ...]) -> list[int] | None:
        """The notification ids of this very batch if it is stored already, else None. A
        connection lost during the commit hides whether it happened; retried, the batch
        then conflicts with itself, and its command, decided again on what it had stored,
        would refuse what it had done (a 409 for a conversation it had just closed)."""
        curs = self._cursor
        assert curs is not None  # the attempt that conflicted made it
        await curs.execute(self._recorder.stored_statement, columns[:4], prepare=True)
        return stored_positions(await curs.fetchall())

    async def _discard(self) -> None:
        self._cursor = None
        if self._conn is not None:
            await self._conn.close()
            self._conn = None

    async def aclose(self) -> None:
        await self._discard()
