"""Idempotency-Key: a retried command gets the first answer and no second event, even
when the process running the first attempt died.

Protocol, per principal and key (`services.api.deps.CommandCall.run` drives it):
* `begin` reserves the key for one request (its `fingerprint`: method, path and body) and
  answers a `Reservation`, or the stored answer once the key's command completed. Another
  request with the key is refused while the key is held (`idempotency-key-in-use`, with
  `Retry-After`: the seconds left of the holder's lease, `KeyInUseError`); a different
  request with the key always (`idempotency-key-reused`).
* A holder keeps its key by a lease of `lease_seconds`, renewed while its command runs
  (`lease_kept`). Once a lease ran out without renewal (its process died), the next retry
  of the same request takes the key over, `recovering`: whether the dead attempt
  committed is then asked of the event store (`services.idempotency_recovery`).
* `complete` stores the answer; `release` frees the key after a failed command (which
  changed nothing) so that a retry runs it again. Both act only while the key is still
  this holder's, so an attempt that lost its key cannot overwrite or free it.
* A key is remembered for `retention_seconds` from its first reservation, then forgotten:
  its row is deleted when the key is used again and by a sweep (at most once a minute,
  while keys are used), and the key may serve a new request.

Storage: `services.idempotency_store`. Times are seconds since the epoch on the API
process's clock (`clock`, injectable for tests).

A fingerprint is keyed (HMAC-SHA-256 under a key derived from a secret of the key store,
the search key): a request's body carries personal values in plaintext, and its row is
kept for a day, erasure or not. An unkeyed hash would let anyone who reads the table
test a guessed phone number or e-mail against it; a keyed one tells them only whether
two requests were the same.

Events carry a keyed digest of the key, never the key (`event_key`): a client may name
a request after its person (`Idempotency-Key: signup-grace.hopper@example.com`), and an
event's metadata is kept for good, in plaintext, in the hash-chained log and on Kafka,
where no erasure reaches, and shown to every reader of the event (an analyst too). The
digest is `hmac:` and 32 hex digits (128 bits) of HMAC-SHA-256, under another key
derived from the same secret, of the principal and the key: it tells a reader of events
only which events one keyed command emitted, and tests no guess without the secret.
Events stored by releases before it carry the key as sent (the log is immutable): which
events a keyed command emitted is read one way (`emitted_under`: its principal, and
either form of its key), by a retry that recovers a dead attempt
(`services.idempotency_recovery`) and by the retry of an erasure the sweep finished
(`services.commands`). The key table knows a key by the same digest: its rows are kept
a day, and no erasure reaches them either. Rows a release before stored by the key as
sent are given their digest when the table is opened (`digest_sent_keys`).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import math
import time
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from uuid import UUID

import msgspec
import structlog
from psycopg_pool import ConnectionPool

from consumers.pg_pool import DATABASE_UNAVAILABLE
from domain.base import DomainEvent
from services.idempotency_store import (
    Database,
    Hold,
    KeyRow,
    KeyTable,
    PostgresDatabase,
    SqliteDatabase,
)

KEY_LIMIT = 200
FINGERPRINTS = b"crm idempotency fingerprints"
"""What the fingerprints' key is derived for from the secret. It holds no colon, so it is
no search term's input (`field:value`, `consumers.blind_index`) under the same key."""
EVENT_KEYS = b"crm idempotency keys in events"
"""What the key of events' digests (`Idempotency.event_key`) is derived for from the
secret; like `FINGERPRINTS`, without a colon."""
EVENT_KEY_PREFIX = "hmac:"
EVENT_KEY_HEX = 32
"""A digest in an event is `EVENT_KEY_PREFIX` and this many hex digits (128 bits)."""
SWEEP_EVERY = 60.0
"""Seconds between two sweeps of forgotten keys by one process (while keys are used)."""


class IdempotencyError(Exception):
    """The key cannot be used for this request; `reason` is a stable problem suffix."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


class KeyInUseError(IdempotencyError):
    """Another attempt holds the key (`idempotency-key-in-use`). `retry_after`: the whole
    seconds left of its lease (at least one), after which a retry may take the key over
    if its holder died (a live holder renews it, and a retry then is told again)."""

    def __init__(self, retry_after: str) -> None:
        super().__init__(
            "idempotency-key-in-use", "a request with this Idempotency-Key is still running"
        )
        self.retry_after = retry_after


class BadIdempotencyKeyError(IdempotencyError):
    """The key itself is malformed (empty, too long, not printable ASCII)."""


class StoredAnswer(msgspec.Struct, frozen=True):
    status: int
    body: bytes


class Reservation(Hold, frozen=True, kw_only=True):
    """A key held by one attempt. `holder` is this attempt's proof (renew, complete,
    release); `reservation` and `reserved_at` belong to the key and survive a takeover,
    so the retry of a dead attempt derives the same new ids (`created_id`) and knows
    since when to look for its events. `recovering`: taken over from a dead holder.
    `event_key`: what the events of its command carry for the key (`Idempotency.event_key`),
    and what the table knows it by; `key`: the key as sent, held in memory only."""

    key: str
    reservation: UUID
    reserved_at: float
    recovering: bool


def emitted_under(event: DomainEvent, owner: str, key: str, event_key: str) -> bool:
    """Whether `event` was emitted by a command of principal `owner` under `key`: it
    carries the key's digest (`event_key`) or, stored by a release before digests, the
    key as sent, and `owner` as its actor (keys are per principal)."""
    return event.actor == owner and event.idempotency_key in (event_key, key)


def check_key(key: str) -> str:
    """A key is 1-KEY_LIMIT printable ASCII without a comma: a proxy or client library
    folds two header lines into one joined by a comma, so `a, b` could be two keys."""
    if not 0 < len(key) <= KEY_LIMIT or not key.isascii() or not key.isprintable() or "," in key:
        raise BadIdempotencyKeyError(
            "bad-idempotency-key",
            f"Idempotency-Key must be 1-{KEY_LIMIT} printable ASCII characters but a comma "
            "(one that holds a comma may be two keys folded into one line)",
        )
    return key


def created_id(reservation: UUID, owner: str, key: str) -> UUID:
    """The id of the aggregate a keyed command creates: the same for every attempt under
    one reservation (a retry finds what a dead attempt created), another one once the key
    was forgotten and reserved anew (so a reused key never collides with its past)."""
    return uuid.uuid5(reservation, f"{owner}\n{key}")


def outcome(row: KeyRow | None, request: str, attempt: Reservation) -> Reservation | StoredAnswer:
    """What `begin` answers, from the key's row after `attempt` (a new reservation, made
    now: its `reserved_at`) tried to reserve the key or to take it over."""
    if row is not None and row.fingerprint != request:
        raise IdempotencyError(
            "idempotency-key-reused", "this Idempotency-Key was used for another request"
        )
    if row is not None and row.holder == attempt.holder and row.status is None:
        kept = UUID(row.reservation) if row.reservation else attempt.reservation
        return msgspec.structs.replace(
            attempt,
            reservation=kept,
            reserved_at=row.reserved_at,
            recovering=kept != attempt.reservation,
        )
    if row is not None and row.status is not None and row.body is not None:
        return StoredAnswer(row.status, row.body)
    until = None if row is None else row.lease_until  # no row: released meanwhile
    left = 0.0 if until is None else until - attempt.reserved_at  # reserved now
    raise KeyInUseError(str(max(1, math.ceil(left))))


class Idempotency:
    """The protocol above over a `KeyTable`, with its lease, retention and clock."""

    def __init__(
        self,
        table: KeyTable,
        *,
        secret: bytes,
        lease_seconds: float = 30.0,
        retention_seconds: float = 86_400.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._table = table
        self._key = hmac.new(secret, FINGERPRINTS, hashlib.sha256).digest()
        self._event_key = hmac.new(secret, EVENT_KEYS, hashlib.sha256).digest()
        self.lease_seconds = lease_seconds
        self.retention_seconds = retention_seconds
        self.clock = clock
        self._next_sweep = 0.0

    def fingerprint(self, method: str, path: str, body: bytes) -> str:
        """The `request` of `begin`: the same for the same request, keyed."""
        request = b"%s %s\n%s" % (method.encode(), path.encode(), body)
        return hmac.new(self._key, request, hashlib.sha256).hexdigest()

    def event_key(self, owner: str, key: str) -> str:
        """What events carry for `owner`'s `key` (see the module): the same in every
        process of a deployment, another for another principal's same key. A key holds
        no newline (`check_key`), so `owner` and `key` are told apart."""
        named = f"{owner}\n{key}".encode()
        digest = hmac.new(self._event_key, named, hashlib.sha256).hexdigest()
        return EVENT_KEY_PREFIX + digest[:EVENT_KEY_HEX]

    def begin(self, owner: str, key: str, request: str) -> Reservation | StoredAnswer:
        """A `Reservation` (go ahead, then `complete` or `release`), or the first answer."""
        now = self.clock()
        if now >= self._next_sweep:
            self.sweep()
        held = Reservation(
            owner=owner,
            key=check_key(key),
            holder=uuid.uuid4().hex,
            reservation=uuid.uuid4(),
            reserved_at=now,
            recovering=False,
            event_key=self.event_key(owner, key),
        )
        row = self._table.reserve(
            held,
            request,
            reservation=str(held.reservation),
            now=now,
            lease_until=now + self.lease_seconds,
            forget_before=now - self.retention_seconds,
        )
        return outcome(row, request, held)

    def renew(self, held: Reservation) -> bool:
        """Extend `held`'s lease; False when the key is no longer `held`'s."""
        return self._table.renew(held, self.clock() + self.lease_seconds)

    def complete(self, held: Reservation, answer: StoredAnswer) -> None:
        self._table.complete(held, answer.status, answer.body)

    def release(self, held: Reservation) -> None:
        self._table.release(held)

    def digest_sent_keys(self) -> int:
        """Key the rows a release before digests stored by the key as sent by its digest
        instead (`KeyTable.digest_sent_keys`); how many there were."""
        return self._table.digest_sent_keys(self.event_key, EVENT_KEY_PREFIX)

    def sweep(self) -> int:
        """Delete every forgotten key (reserved longer than the retention ago)."""
        now = self.clock()
        self._next_sweep = now + min(SWEEP_EVERY, self.retention_seconds)
        return self._table.sweep(now - self.retention_seconds)


@contextlib.asynccontextmanager
async def lease_kept(idempotency: Idempotency, held: Reservation) -> AsyncIterator[None]:
    """Renew `held`'s lease every third of it while the block runs, so that a live
    holder keeps its key however long its command takes."""

    async def renew() -> None:
        while True:
            await asyncio.sleep(idempotency.lease_seconds / 3)
            try:
                kept = await asyncio.to_thread(idempotency.renew, held)
            except DATABASE_UNAVAILABLE as error:  # a blip must not fail the command: next third
                structlog.get_logger().warning("idempotency_lease_not_renewed", error=repr(error))
                continue
            if not kept:
                structlog.get_logger().warning("idempotency_key_lost", key=held.event_key)
                return

    renewing = asyncio.create_task(renew())
    try:
        yield
    finally:
        renewing.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await renewing


def open_idempotency(
    pool: ConnectionPool | None,
    data_dir: Path,
    *,
    secret: bytes,
    lease_seconds: float = 30.0,
    retention_seconds: float = 86_400.0,
) -> Idempotency:
    """`secret`: the key store's search key (`Keyring.search_key`), which keys the
    fingerprints; every API process of a deployment has the same."""
    database: Database = (
        SqliteDatabase(data_dir / "idempotency.db") if pool is None else PostgresDatabase(pool)
    )
    idempotency = Idempotency(
        KeyTable(database),
        secret=secret,
        lease_seconds=lease_seconds,
        retention_seconds=retention_seconds,
    )
    idempotency.digest_sent_keys()
    return idempotency
