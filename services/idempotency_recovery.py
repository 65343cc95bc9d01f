"""Whether a keyed command whose process died committed: its answer, from the event store.

An attempt whose holder died (its lease ran out, `services.idempotency`) may have
committed or not, and could not store its answer. Every event a keyed command emits
carries the key (`idempotency_key`, with `actor` the key's principal): a keyed digest of
it (`Reservation.event_key`), or, stored by a release before digests, the key as sent.
So the retry that took the key over reads the target aggregate's events: those of this
principal with either form of the key, emitted since the key was reserved, are the dead
attempt's (an attempt in flight across an upgrade wrote the key as sent, and its
retry runs the new release), and its answer is rebuilt
from the last of them (its version, its global position, any answer field it holds,
such as a new message's id), exactly as the attempt would have answered. None: nothing
committed, so the retry runs the command.

An aggregate is found by id: the target of a change, or the id a creation derives from
the key's reservation (`services.idempotency.created_id`). A recovered erasure also
destroys the customer's key: its attempt may have died between the event and that.

I/O: the event store (one aggregate's events; one indexed query for a position) and, for
an erasure, the keyring.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from uuid import UUID

from domain.base import DomainEvent
from domain.customer import CustomerErased
from services.commands import CommandResult, CommandService
from services.event_positions import event_position
from services.idempotency import Reservation, emitted_under


def attempt_events(
    events: Iterable[DomainEvent], held: Reservation, since: datetime
) -> list[DomainEvent]:
    """The events `held`'s attempt emitted: its principal's, with its key's digest or,
    from a release before digests, its key as sent, not older than `since` (its
    reservation: an older use of the key was forgotten before it was reserved)."""
    return [
        event
        for event in events
        if emitted_under(event, held.owner, held.key, held.event_key) and event.occurred_at >= since
    ]


def recovered_result(
    events: Sequence[DomainEvent], position: int, extras: Iterable[str]
) -> CommandResult:
    """The answer the attempt that emitted `events` (in order) would have given."""
    last = events[-1]
    fields = {name: getattr(last, name) for name in extras if hasattr(last, name)}
    return CommandResult(
        id=last.originator_id, version=last.originator_version, position=position, **fields
    )


async def committed_answer(
    commands: CommandService,
    target: UUID,
    held: Reservation,
    extras: Iterable[str],
    *,
    margin: float,
) -> CommandResult | None:
    """The answer of `held`'s dead attempt on `target` if it committed, else None.
    `margin` (seconds) allows for a clock stepped back between reserving and deciding."""
    since = datetime.fromtimestamp(held.reserved_at - margin, UTC)
    history = await asyncio.to_thread(commands.app.history, target)
    events = attempt_events(history, held, since)
    if not events:
        return None
    version = events[-1].originator_version
    position = await asyncio.to_thread(event_position, commands.app.recorder, target, version)
    if any(isinstance(event, CustomerErased) for event in events):
        await asyncio.to_thread(commands.keyring.erase, target)
        commands.cache.clear()  # cached aggregates may hold the erased plaintext
    return recovered_result(events, position, extras)
