"""Signed checkpoints: every N events or T seconds, sign the log's position, chain head
and Merkle tree head, store the checkpoint and publish it.

Before signing, the checkpointer walks the events since the previous checkpoint and
recomputes their chain and tree from that checkpoint's heads (its Merkle frontier is
saved beside it), so it never signs over a break: it refuses, says where, and keeps
refusing until the store is repaired. Walking only the new events keeps a checkpoint's
cost proportional to them, not to the log.

It runs as a thread of one process per store: `crm relay` (PostgreSQL: the one
process that already follows the whole log and talks to Kafka) or `crm run` (embedded,
nothing to publish to); `crm audit checkpoint` signs one on demand. Two signers are
harmless: a position is signed once (the store keeps the first).

I/O: the audit log (event store database), the signing key, `publish`.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Protocol

import psycopg
import structlog
from eventsourcing.persistence import PersistenceError

from domain.chain_walk import ChainWalk
from domain.checkpoint import Checkpoint, statement
from domain.merkle import MerkleFrontier
from services.audit_keys import SigningKey
from services.audit_log import AuditLog, pages


class PublishFailed(Exception):  # noqa: N818 - reads as what happened
    """The checkpoints were not acknowledged where they are published; they stay
    unpublished and are sent again."""


RETRIED = (PublishFailed, PersistenceError, psycopg.Error, sqlite3.Error)
"""Failures that go away by themselves (broker or database back); refusals do not, but
are retried too, so signing resumes once the store is repaired."""

log = structlog.get_logger("crm.audit")


class Publisher(Protocol):
    def __call__(self, signed: Sequence[Checkpoint]) -> None:
        """Send checkpoints (e.g. to Kafka); return once they are durable there, or
        raise `PublishFailed`."""
        ...

    def close(self) -> None: ...


class CheckpointRefused(Exception):  # noqa: N818 - reads as what happened
    """The log does not match its chain or the last checkpoint: nothing is signed."""


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
    ) -> None:
        self._clock = clock
        self._log = audit_log
        self._key = key
        self._every_events = every_events
        self._every_seconds = every_seconds
        self._publish = publish

    def due(self) -> bool:
        """N new positions since the last checkpoint, or T seconds and at least one."""
        latest = self._log.latest_checkpoint()
        head = self._log.last_position()
        if latest is None:
            return head > 0
        checkpoint = latest[0]
        if head <= checkpoint.position:
            return False
        age = self._clock() - datetime.fromisoformat(checkpoint.signed_at)
        new = head - checkpoint.position  # positions, an upper bound on events
        return new >= self._every_events or age.total_seconds() >= self._every_seconds

    def checkpoint(self) -> Checkpoint | None:
        """Sign a checkpoint at the head of the log; None if there is nothing new."""
        walk = self._walk_from_last()
        start = walk.position
        for entries, links in pages(self._log, start, self._log.last_position()):
            broken = walk.feed(entries, links)
            if broken is not None:
                raise CheckpointRefused(f"not signing: {broken}")
        if walk.position == start or walk.tree is None:
            return None
        checkpoint = self._sign(walk.position, walk.count, walk.chain, walk.tree.root())
        if not self._log.add_checkpoint(checkpoint, walk.tree.to_bytes()):
            return None  # another signer got there first
        log.info("checkpoint signed", position=checkpoint.position, events=checkpoint.tree_size)
        return checkpoint

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

    def _walk_from_last(self) -> ChainWalk:
        latest = self._log.latest_checkpoint()
        if latest is None:
            return ChainWalk()
        checkpoint, saved = latest
        tree = MerkleFrontier.from_bytes(checkpoint.tree_size, saved)
        if tree.root().hex() != checkpoint.tree_head:
            raise CheckpointRefused(
                f"not signing: the Merkle frontier saved with the checkpoint at "
                f"{checkpoint.position} does not give its tree head"
            )
        chain = bytes.fromhex(checkpoint.chain_head)
        return ChainWalk(position=checkpoint.position, chain=chain, tree=tree)

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
        if self.due():
            self.checkpoint()
        self.publish_pending()

    def run(self, stop: threading.Event, poll_seconds: float = 1.0) -> None:
        """Sign and publish until `stop` is set. Failures are logged once and retried:
        a refusal stays until the store is repaired, a broker outage until it is back."""
        last_error = ""
        while not stop.is_set():
            try:
                self.tick()
                last_error = ""
            except (CheckpointRefused, *RETRIED) as error:
                if str(error) != last_error:
                    log.error("checkpoint failed", error=str(error), kind=type(error).__name__)
                    last_error = str(error)
            stop.wait(min(poll_seconds, self._every_seconds))
