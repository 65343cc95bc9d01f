"""Where the relay has got to: one row in PostgreSQL table `crm_relay_position`.

The position is the highest notification id whose event — and every event before it —
the broker has acknowledged. The relay writes it only after acknowledgement, so after a
crash it re-sends from there (duplicates possible, gaps never). Also answers "how far
behind is the relay" for `crm relay status` and `/metrics`. Its statements wait at most
`consumers.pg_lock_wait.LOCK_TIMEOUT_S` for a lock on the row's table
(`LockWaitTimedOut`, naming who holds it): the relay tries again in its loop, and
stops promptly when asked (red team: a `LOCK TABLE crm_relay_position` held it, and
its SIGTERM, for as long as it was held).

`PublishedChain` is the relay's other half of "where it has got to": the hash chain
folded over the events it published, as it read them, handed in memory to the audit
signer of the same process (`services.checkpointer`), which signs only up to there.

I/O: PostgreSQL (position row), the event store's recorder (head of the log); none in
`PublishedChain` (its `anchor` reads the store, given by the composition root).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, NamedTuple, Protocol

import msgspec
from psycopg_pool import ConnectionPool

from consumers.pg_ddl import create_tables
from consumers.pg_lock_wait import bounded
from consumers.relay_reads import bounded_log
from domain.hashchain import GENESIS, canonical_bytes, link

_CREATE = """
CREATE TABLE IF NOT EXISTS crm_relay_position (
    singleton boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    position bigint NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now()
)"""
_SELECT = "SELECT position FROM crm_relay_position WHERE singleton"
_UPSERT = """
INSERT INTO crm_relay_position (singleton, position, updated_at) VALUES (true, %s, now())
ON CONFLICT (singleton) DO UPDATE SET position = EXCLUDED.position, updated_at = now()"""
_TABLE = ("crm_relay_position",)


class PositionStore(Protocol):
    """Durable relay position: `load()` gives 0 before the first `save()`."""

    def load(self) -> int: ...

    def save(self, position: int) -> None: ...


class PostgresRelayPosition:
    """The relay position row, in the same database as the event store."""

    def __init__(self, pool: ConnectionPool) -> None:
        self._pool = pool
        with pool.connection() as conn:
            create_tables(conn, _CREATE)

    def load(self) -> int:
        with self._pool.connection() as conn, bounded(conn, "stored position not read", _TABLE):
            row = conn.execute(_SELECT).fetchone()
        return int(row[0]) if row else 0

    def save(self, position: int) -> None:
        what = f"position {position} not stored"
        with self._pool.connection() as conn, bounded(conn, what, _TABLE):
            conn.execute(_UPSERT, (position,))


class MemoryRelayPosition:
    """In-process position for unit tests and the benchmark's baseline runs."""

    def __init__(self, position: int = 0) -> None:
        self.position = position

    def load(self) -> int:
        return self.position

    def save(self, position: int) -> None:
        self.position = position


class AnchorRefused(Exception):  # noqa: N818 - reads as what happened
    """The store's chain at the relay's starting position is not to be trusted (it
    contradicts what was remembered of an earlier run): the relay gets no head."""


class Rewound(NamedTuple):
    """What an anchor answers for a stored position past the head remembered beside the
    signer's key: start from that head (`position`, its `chain`), not from there; `why`
    the relay distrusts the stored position (for its warning)."""

    position: int
    chain: bytes
    why: str = (
        "the stored position is past the head remembered beside the audit key, written"
        " before every position the relay stores: it was moved by hand, or the head could"
        " not be kept; publishing from the head again (duplicates)"
    )


class PublishedChain:
    """The chain head at the relay's published position: `(position, chain)`, where
    `chain` is `domain.hashchain`'s chain folded over the canonical bytes of the events
    the relay published, as it read them (never read back from the database), from the
    head it started from. None until the relay has one (`start`).

    The relay starts from the store's own link at its stored position (`anchor`): it did
    not see the events before it in this process, so up to there the head is only what
    the store says. From then on it is the relay's: a row (and its link) rewritten after
    the relay read it no longer gives it. Written by the relay's thread (one assignment),
    read by the signer's.

    `anchor` may raise `AnchorRefused` (the store's link contradicts the head remembered
    beside the signer's key, `services.audit_published.checked_anchor`): then the chain
    has no head for the whole run, and `refused` says why; nothing the relay publishes
    gives it one, so the store's link is never handed on as the relay's. It may answer
    `Rewound` for a stored position past the remembered head (red team: the position
    row moved forward skipped events, which the signer then signed), or, with no head
    remembered but a checkpoint signed, past that checkpoint: the relay starts from
    there instead, publishes what lies between again, and says why (`rewound`)."""

    def __init__(
        self,
        anchor: Callable[[int], bytes | Rewound | None],
        remember: Callable[[tuple[int, bytes]], str | None] | None = None,
    ) -> None:
        self._anchor = anchor
        self._remember = remember
        self.head: tuple[int, bytes] | None = None
        self.started_at: int | None = None
        """The position the relay started from, whose chain is the store's (None until
        it has started)."""
        self.refused: str | None = None
        """Why the anchor was refused (then never a head), None if it was not."""
        self.rewound: Rewound | None = None
        """Where the anchor sent the relay back to, below its stored position, and why."""

    def start(self, position: int) -> tuple[int, bytes | None]:
        """Where the relay starts, given its stored `position`, and the chain there to
        fold on from, also made the head. That is `position` and the
        store's link there (GENESIS at 0; None, and no head, if the store has no link
        there), or the head remembered below it (`Rewound`). Errors of the anchor
        (the store out of reach, a lock) leave it not started, to start again."""
        try:
            found = GENESIS if position == 0 else self._anchor(position)
        except AnchorRefused as error:
            self.refused, self.head = str(error), None
            self.started_at = position  # last: the signer's thread reads it first
            return position, None
        self.rewound = found if isinstance(found, Rewound) else None
        at, chain = (
            (found.position, found.chain) if isinstance(found, Rewound) else (position, found)
        )
        self.head = None if chain is None else (at, chain)
        self.started_at = at
        return at, chain

    def published(self, position: int, chain: bytes) -> None:
        """The broker acknowledged every event up to `position`; `chain` is the head there.
        Kept (`remember`, beside the signer's key) before it becomes the head, and before
        the relay stores its position: a reason from `remember` refuses it, and every head
        after it, for the run; its errors (the store out of reach) reach the relay, which
        then stores no position and tries again."""
        if self.refused is not None:
            return
        if self._remember is not None and (why := self._remember((position, chain))):
            self.refused, self.head = why, None
            return
        self.head = (position, chain)


def fold(chain: bytes, notification: Any) -> bytes:
    """The chain after a stored notification, from its fields as read: one SHA-256."""
    canonical = canonical_bytes(
        notification.id,
        notification.originator_id.bytes,
        notification.originator_version,
        notification.topic,
        notification.state,
    )
    return link(chain, canonical)


class RelayStatus(msgspec.Struct, frozen=True, kw_only=True):
    position: int
    head: int
    lag_events: int
    lag_seconds: float


class _OccurredAt(msgspec.Struct):
    occurred_at: datetime


_occurred_decoder = msgspec.json.Decoder(_OccurredAt)


def relay_status(recorder: Any, positions: PositionStore) -> RelayStatus:
    """Position, head of the log, and lag: events behind, and the age of the oldest
    unpublished event (0 when caught up). Every read waits for a lock a bounded time
    (`LockWaitTimedOut`)."""
    position = positions.load()
    events = bounded_log(recorder)
    head = int(events.max_notification_id() or 0)
    lag_seconds = 0.0
    if head > position:
        oldest = events.select_notifications_within(position + 1, 1, 1)
        if oldest:
            occurred = _occurred_decoder.decode(oldest[0].state).occurred_at
            if occurred.tzinfo is None:
                occurred = occurred.replace(tzinfo=UTC)
            lag_seconds = max(0.0, time.time() - occurred.timestamp())
    return RelayStatus(
        position=position,
        head=head,
        lag_events=max(0, head - position),
        lag_seconds=round(lag_seconds, 3),
    )


def relay_metrics(runtime: Any) -> dict[str, float]:
    """Gauges for `/metrics`: `crm_relay_position`, `crm_relay_head`, `crm_relay_lag_events`,
    `crm_relay_lag_seconds`. `runtime` is the composition root's Runtime (PostgreSQL only;
    empty in embedded mode, which has no relay)."""
    if runtime.pool is None:
        return {}
    status = relay_status(runtime.app.recorder, PostgresRelayPosition(runtime.pool))
    return {
        "crm_relay_position": float(status.position),
        "crm_relay_head": float(status.head),
        "crm_relay_lag_events": float(status.lag_events),
        "crm_relay_lag_seconds": status.lag_seconds,
    }
