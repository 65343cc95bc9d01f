"""Signed checkpoints: every N events or T seconds, sign the log's position, chain head
and Merkle tree head, store the checkpoint and publish it.

Before signing, the checkpointer walks the events since the checkpoint it signed last
and recomputes their chain and tree from that checkpoint's heads, as its own record
beside the key remembers them (`services.signer_memory`), never from the database's
rows: it refuses to sign over a break, over a store whose newest checkpoint its key did
not sign, over an event stored below position 1 (where no walk reads it, though the
application does), or over a log that no longer extends what it signed, says why, and keeps
refusing until the store (or the key and its record) is restored. Walking only the new
events keeps a checkpoint's cost proportional to them, not to the log.

Fed by the relay of its process (`published`, PostgreSQL's `crm relay`), it signs only
up to the relay's published position, and only if the chain it recomputes from the
store gives, there, the head the relay folded over the events as it read and published
them: an event rewritten together with its link after the relay read it is refused,
not signed. The relay remembers its head beside the key (`services.audit_published`:
written before it stores its position, only after a check, never over a refusal; a
relay anchored on a contradicted head has none to sign with), and the signer checks the
store against it each tick, so that the refusal outlives a restart. While the
relay stays behind the store's head for longer than `lag_limit_s` (`/readyz`'s
staleness rule), what it has not published is not signed, and its status says so
(`SignerStatus.lagging`). Unfed (`crm run`, `crm audit checkpoint`) it
signs the log's head as read, once the store still gives the remembered head.

It runs as a thread of one process per store: `crm relay` (PostgreSQL: the one
process that already follows the whole log and talks to Kafka) or `crm run` (embedded,
nothing to publish to); `crm audit checkpoint` signs one on demand. Two signers are
harmless: a position is signed once (the store keeps the first). The thread survives
any failure (logged, retried after its interval); how it is doing (`services.signer_status`) is
what `/readyz` and `/metrics` of an API in the same process report. Running, its
statements wait for a lock a bounded time (`audit_log_pg.with_bounded_lock_waits`), so
that a lock held on its tables is a failure it reports and retries (naming who holds
it), and the thread ends within a second or so of being told to stop.

I/O: the audit log (event store database), the signing key and its record, `publish`.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Protocol

import psycopg
import structlog
from eventsourcing.persistence import PersistenceError

from consumers.pg_lock_wait import LockWaitTimedOut
from consumers.relay_position import PublishedChain
from domain.chain_walk import stray
from domain.checkpoint import Checkpoint, statement
from services.audit_keys import SigningKey
from services.audit_log import AuditLog, pages
from services.audit_log_pg import with_bounded_lock_waits
from services.audit_published import RememberedHead, check_walk
from services.signer_memory import (
    CheckpointRefused,
    LastSigned,
    read_record,
    record_path,
    resume,
    write_record,
)
from services.signer_status import SignerStatus

__all__ = ["CheckpointRefused", "Checkpointer", "PublishFailed"]


class PublishFailed(Exception):  # noqa: N818 - reads as what happened
    """The checkpoints were not acknowledged where they are published; they stay
    unpublished and are sent again."""


RETRIED = (PublishFailed, PersistenceError, psycopg.Error, sqlite3.Error, LockWaitTimedOut)
"""Failures that go away by themselves (broker or database back, a lock let go);
refusals do not, but are retried too, so signing resumes once the store is repaired."""

log = structlog.get_logger("crm.audit")


class Publisher(Protocol):
    def __call__(self, signed: Sequence[Checkpoint]) -> None:
        """Send checkpoints (e.g. to Kafka); return once they are durable there, or
        raise `PublishFailed`."""
        ...

    def close(self) -> None: ...


class Checkpointer:
    def __init__(
        self,
        audit_log: AuditLog,
        key: SigningKey,
        *,
        every_events: int,
        every_seconds: float,
        publish: Publisher | None = None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        published: PublishedChain | None = None,
        lag_limit_s: float | None = None,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._clock = clock
        self._published = published
        self._lag_limit_s = lag_limit_s
        self._monotonic = monotonic
        self._ahead: tuple[int, float] | None = None
        """(the store's head when the relay was first seen behind it, since when)."""
        self._remembered = RememberedHead(key)
        self._log = audit_log
        self._key = key
        self._every_events = every_events
        self._every_seconds = every_seconds
        self._publish = publish
        self.status = SignerStatus()

    def due(self) -> bool:
        """N new positions since the last checkpoint, or T seconds and at least one."""
        if self._published is not None and self._published.started_at is None:
            return False  # the relay has not started yet (its position row locked)
        latest = self._log.latest_checkpoint()
        head = self._log.last_position() if self._published is None else self._relay_head()[0]
        if latest is None:
            return head > 0
        checkpoint = latest[0]
        if head <= checkpoint.position:
            return False
        age = self._clock() - datetime.fromisoformat(checkpoint.signed_at)
        new = head - checkpoint.position  # positions, an upper bound on events
        return new >= self._every_events or age.total_seconds() >= self._every_seconds

    def checkpoint(self) -> Checkpoint | None:
        """Sign a checkpoint at the head of the log (fed by a relay: at its published
        position); None if there is nothing new. The record is written before the row:
        a crash between them leaves a record the next signing finds ahead of the store,
        and stores again (`signer_memory`)."""
        relay = None if self._published is None else self._relay_head()
        self._remembered.check(self._log)
        memory = record_path(self._key)
        walk = resume(self._log, self._key, read_record(memory))
        if (found := self._log.first_stray()) is not None:
            raise CheckpointRefused(f"not signing: {stray(found.position, str(found))}")
        start = walk.position
        upto = self._log.last_position() if relay is None else relay[0]
        for entries, links in pages(self._log, start, upto):
            broken = walk.feed(entries, links)
            if broken is not None:
                raise CheckpointRefused(f"not signing: {broken}")
        if (broken := walk.finish()) is not None:
            raise CheckpointRefused(f"not signing: {broken}")
        if relay is not None and relay[0] > start:
            check_walk(walk, start, *relay)
        if walk.position == start or walk.tree is None:
            return None
        checkpoint = self._sign(walk.position, walk.count, walk.chain, walk.tree.root())
        frontier = walk.tree.to_bytes()
        write_record(memory, LastSigned(checkpoint=checkpoint, frontier=frontier.hex()))
        if not self._log.add_checkpoint(checkpoint, frontier):
            return None  # another signer got there first
        log.info("checkpoint signed", position=checkpoint.position, events=checkpoint.tree_size)
        self.status.signed += 1
        return checkpoint

    def _relay_head(self) -> tuple[int, bytes]:
        """The relay's published position and chain head there; refused while it has none."""
        assert self._published is not None
        if (refused := self._published.refused) is not None:
            raise CheckpointRefused(refused)
        if (head := self._published.head) is None:
            raise CheckpointRefused(
                "not signing: the relay has no chain head to sign up to: the store holds no"
                f" chain link at its position {self._published.started_at} (events stored"
                " before the chain: restart `crm relay` after `crm audit seal-existing`)"
            )
        return head

    def _sign(self, position: int, size: int, chain_head: bytes, tree_head: bytes) -> Checkpoint:
        signed_at = self._clock().isoformat(timespec="microseconds")
        signature = self._key.sign(statement(position, size, chain_head, tree_head, signed_at))
        return Checkpoint(
            position=position,
            tree_size=size,
            chain_head=chain_head.hex(),
            tree_head=tree_head.hex(),
            signed_at=signed_at,
            public_key=self._key.public_key.hex(),
            signature=signature.hex(),
        )

    def publish_pending(self) -> int:
        """Publish the checkpoints not yet published; how many."""
        if self._publish is None:
            return 0
        pending = self._log.unpublished()
        if pending:
            self._publish(pending)
            self._log.mark_published([checkpoint.position for checkpoint in pending])
        return len(pending)

    def close(self) -> None:
        """Close the audit log and the publisher (the checkpointer owns both)."""
        self._log.close()
        if self._publish is not None:
            self._publish.close()

    def tick(self) -> None:
        if self._published is not None:
            self.status.lagging = self._relay_lag()
            self._remembered.check(self._log)  # the relay writes it (`remembering`)
        if self.due():
            self.checkpoint()
        self.publish_pending()

    def run(
        self,
        stop: threading.Event,
        poll_seconds: float = 1.0,
        report: Callable[[str | None], None] | None = None,
    ) -> None:
        """Sign and publish until `stop` is set. Any failure is logged (once while it
        repeats; an unexpected one with its traceback) and retried after the interval:
        a refusal stays until the store is repaired, a broker outage until it is back,
        and a bad row until it is gone. `self.status` says which, while running, to
        this process; `report` is told each change of `status.trouble()`, for a
        process whose status the API cannot see (`crm relay`: its health row)."""
        reported: str | None = None  # the error last reported (its count aside)
        with_bounded_lock_waits(self._log)
        with self.status.running():
            while not stop.is_set():
                self._attempt()
                trouble = self.status.trouble()
                lagging = trouble is not None and trouble == self.status.lagging
                error = trouble if lagging else None if trouble is None else self.status.error
                if report is not None and error != reported:
                    reported = error
                    report(None if trouble is None else f"audit signer {trouble}")
                stop.wait(min(poll_seconds, self._every_seconds))

    def _relay_lag(self) -> str | None:
        """Trouble when the relay has stayed behind the store's head for longer than the
        limit (`lag_limit_s`, readiness's staleness rule for the signing interval):
        what it has not published is not signed (a Kafka outage, a stalled relay)."""
        if self._lag_limit_s is None or self._published is None:
            return None
        published = 0 if (head := self._published.head) is None else head[0]
        stored, now = self._log.last_position(), self._monotonic()
        if stored <= published:
            self._ahead = None
            return None
        if self._ahead is None or published >= self._ahead[0]:
            self._ahead = (stored, now)  # caught up with what it was behind: wait afresh
        if now - self._ahead[1] < self._lag_limit_s:
            return None
        return (
            f"behind the relay: the store's head has been ahead of what the relay published"
            f" (position {published}) for more than {self._lag_limit_s:.0f} s; events it has"
            " not published are not signed (a Kafka outage, or the relay stalled)"
        )

    def _attempt(self) -> None:
        try:
            self.tick()
        except CheckpointRefused as error:
            if self.status.failed(error, refused=True):
                log.error("checkpoint refused", error=str(error))
        except RETRIED as error:
            if self.status.failed(error, refused=False):
                log.error("checkpoint failed", error=str(error), kind=type(error).__name__)
        except Exception as error:  # the one blanket catch: a bad row or a bug must not
            # end the thread (signing would stop for good while /readyz said ready)
            if self.status.failed(error, refused=False):
                log.exception("checkpoint failed unexpectedly", kind=type(error).__name__)
        else:
            self.status.succeeded()
