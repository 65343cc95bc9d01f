"""Whether a Kafka record carries what the event store holds at its position.

The event store is the one truth; Kafka is only how it is published, and any internal
service that can subscribe to the topics can also produce to them unless the broker's
ACLs forbid it. A consumer that applied whatever the topics held would let such a
service forge its way into the read models, and through them into the access model:
a `CustomerShared` with its own department opens another department's customer to it,
an event with a huge aggregate version makes every later genuine event of that customer
"already applied", a `CustomerConsentChanged` lets marketing read e-mails. So every
consumer of the event topics (the live one, a rebuild, a verify and a retry: all read
through `consumers.hand_over`) applies a record only if the event store of its own
database holds, at the record's position, an event of the record's type and schema
version whose stored bytes are the record's `data`, as the relay publishes it
(`consumers.relay.encode_notification`). A record that is not is rejected: recorded,
never applied or retried (`consumers.projecting`). A genuine record copied to another
partition or topic passes this check; the order of its aggregate's versions is what
stops it there.

What a consumer reads of a record is its `type`, `schemaversion`, `position` and
`data` (`consumers.envelope.Delivered`); the data names the aggregate and its version
and holds every value a projection applies, so these are what is compared. An event
stored in an older schema version is published upcast by today's relay (and was
published as stored by the relay of its time): its record is compared decoded with the
stored event, whose state is fetched for that alone (one more query, only in a batch
holding such an event). `crm audit verify --kafka` compares its records by the same
rule (`unlike`; `services.audit_kafka`).

I/O: PostgreSQL, through `PostgresStoredEvents` (one query per batch, binary tuples, on
a pool of the consumer's process: `services.bootstrap.as_stored`); the embedded default
has no Kafka consumers (its follower reads the event store itself).
"""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from typing import Any, NamedTuple, Protocol

import psycopg
from psycopg.rows import tuple_row
from psycopg.sql import SQL, Composable, Literal

from consumers.envelope import Delivered, event_of
from domain import codec

LARGEST_POSITION = 2**63 - 1
"""A notification id is a PostgreSQL bigint: a record claiming a position past it (or
below 1) names nothing the store could hold, and is not asked about."""
WHOLE_BYTES = 4096
"""Stored states up to this size are fetched whole and compared byte for byte with a
record's data (no hashing on either side: most events are a few hundred bytes, and
SHA-256 cost more than the query); a larger one comes as its SHA-256, so records
forged to name the positions of the largest events cost at most this much memory
each."""


class Held(NamedTuple):
    """What the store holds at a position: its topic (`<type>@<schema version>`), the
    length of its state, and the state (or its SHA-256, past `WHOLE_BYTES`)."""

    topic: str
    length: int
    state: bytes

    def holds(self, data: Any) -> bool:
        """Whether `data` (bytes, or a record's raw `data`) is the stored state."""
        if len(data) != self.length:
            return False
        return self.state == (bytes(data) if self.length <= WHOLE_BYTES else digest(data))


class StoredEvents(Protocol):
    """The event store, as far as a consumer asks it about records."""

    def held(self, positions: Sequence[int]) -> dict[int, Held]:
        """What is stored at those of `positions` the store holds (one query)."""
        ...

    def states(self, positions: Sequence[int]) -> dict[int, bytes]:
        """The stored states at `positions` (for events stored in an older schema)."""
        ...


def digest(data: Any) -> bytes:
    """SHA-256 of `data` (bytes, or any buffer: a record's raw `data`)."""
    return hashlib.sha256(data).digest()


@functools.cache  # a few dozen topics
def _stored_as(topic: str) -> tuple[str, int, bool]:
    """(type, schema version, whether today's relay publishes it upcast) of a stored
    topic (`codec.topic_of`); a type this code does not know is never upcast (the relay
    cannot publish it at all)."""
    name, _, number = topic.partition("@")
    version = int(number or 1)
    try:
        return name, version, version != codec.event_class(name).class_version
    except codec.UnknownEventType:
        return name, version, False


def upcast_on_publication(topic: str) -> bool:
    """Whether an event stored under `topic` is published upcast by today's relay (its
    schema version is older than its class's), as its older records were not."""
    return _stored_as(topic)[2]


def unlike(kind: str, schemaversion: int, same_data: bool, topic: str) -> str | None:
    """Why a record of type `kind` in `schemaversion`, whose data is the stored state
    or not (`same_data`), is not the event stored under `topic`; None when it is."""
    stored_kind, stored_version, _ = _stored_as(topic)
    if (kind, schemaversion) != (stored_kind, stored_version):
        return (
            f"it is a {kind} in schema version {schemaversion}; the event store holds a"
            f" {stored_kind} in schema version {stored_version}"
        )
    return None if same_data else f"its data differs from the stored {kind}"


def mismatches(delivered: Sequence[Delivered], events: StoredEvents) -> list[str | None]:
    """For each record (its delivered attributes), why it is not what the event store
    holds at its position (`not as stored at position P: ...`), or None when it is."""
    asked = [d.position for d in delivered if 0 < d.position <= LARGEST_POSITION]
    stored = events.held(sorted(set(asked))) if asked else {}
    reasons: list[str | None] = []
    upcast: dict[int, str] = {}  # index -> stored topic, to compare decoded
    for index, record in enumerate(delivered):
        held = stored.get(record.position)
        if held is None:
            reasons.append("the event store holds no event there")
            continue
        reason = unlike(record.type, record.schemaversion, held.holds(record.data), held.topic)
        if reason is not None and _upcast_kind(record, held):
            upcast[index] = held.topic
        reasons.append(reason)
    if upcast:
        _compare_decoded(delivered, upcast, events, reasons)
    return [None if r is None else f"not as stored at position {d.position}: {r}"
            for d, r in zip(delivered, reasons, strict=True)]  # fmt: skip


def _upcast_kind(record: Delivered, held: Held) -> bool:
    """Whether `record` may be the upcast publication of the event `held`: one stored
    in an older schema version, under the record's type."""
    kind, _, upcast = _stored_as(held.topic)
    return upcast and record.type == kind


def _compare_decoded(
    delivered: Sequence[Delivered],
    upcast: dict[int, str],
    events: StoredEvents,
    reasons: list[str | None],
) -> None:
    """Settle the records of events stored in an older schema: the same event decoded
    (upcast) as the stored one, or their reason stays."""
    states = events.states(sorted({delivered[i].position for i in upcast}))
    for index, topic in upcast.items():
        record, state = delivered[index], states.get(delivered[index].position)
        cls, version = codec.parse_topic(topic)
        try:
            same = state is not None and event_of(record) == codec.decode(cls, state, version)
        except Exception:  # a record that does not decode is not the stored event, by design
            same = False
        reasons[index] = None if same else (
            f"its data differs from the stored {record.type} (stored in schema version"
            f" {version}, compared decoded)"
        )  # fmt: skip


class PostgresStoredEvents:
    """`StoredEvents` on the PostgreSQL event store: its events table, queried on
    connections `connection()` lends (the consumer process's own pool, not the event
    store's: `services.bootstrap.as_stored`)."""

    def __init__(
        self,
        connection: Callable[[], AbstractContextManager[psycopg.Connection[Any]]],
        events_table: Composable,
    ) -> None:
        self._connection = connection
        where = SQL(" FROM {} WHERE notification_id = ANY(%b::bigint[])").format(events_table)
        held = SQL(
            "SELECT notification_id, topic, octet_length(state), CASE WHEN"
            " octet_length(state) <= {whole} THEN state ELSE sha256(state) END"
        ).format(whole=Literal(WHOLE_BYTES))
        self._held = (held + where).as_bytes()
        self._states = (SQL("SELECT notification_id, state") + where).as_bytes()

    def held(self, positions: Sequence[int]) -> dict[int, Held]:
        return {p: Held(t, n, bytes(s)) for p, t, n, s in self._rows(self._held, positions)}

    def states(self, positions: Sequence[int]) -> dict[int, bytes]:
        return {p: bytes(s) for p, s in self._rows(self._states, positions)}

    def _rows(self, statement: bytes, positions: Sequence[int]) -> list[Any]:
        with (
            self._connection() as conn,
            conn.cursor(binary=True, row_factory=tuple_row) as cursor,
        ):
            cursor.execute(statement, (list(positions),), prepare=True)
            return cursor.fetchall()
