"""`crm audit verify`'s check of the snapshots against the events they stand for.

A snapshot (`domain.snapshot`) is a cache: a read from nothing starts from an
aggregate's newest one and applies only the events after it. So a row written into the
snapshots table behind the application's back (another owner department, a share, a
consent no event recorded) becomes the state every read and every access decision
uses, though no event changed and the chain still holds. The check rebuilds each
snapshotted aggregate from its events (once, up to its newest snapshot, checking every
snapshot of it on the way) and compares what each snapshot holds with what the events
give at its version, as a reader would decode it. One that differs, that names a
version the aggregate's events do not reach, another kind of aggregate, or that does
not decode, is an edit (named by the position of the event at its version, 0 if none).

A snapshot in another shape than this code's (another tag: an older release's) is
passed over by every reader, and so here; so is one under an id the store never spells
so (SQLite), which no reader finds. Run after a walk that found the log whole: the
events replayed are then the ones the chain and checkpoints vouch for.

I/O: the audit log (snapshot rows, an aggregate's events by version).
"""

from __future__ import annotations

from collections.abc import Iterable
from uuid import UUID

import msgspec

from domain import codec
from domain.base import Aggregate
from domain.chain_walk import Break, BreakKind
from domain.snapshot import STATES, TAGS, snapshot
from services.audit_log import AuditLog

REPLAY_PAGE = 1000
_KINDS = {tag: kind for kind, tag in TAGS.items()}
_DECODERS = {kind: msgspec.json.Decoder(state) for kind, state in STATES.items()}


def check_snapshots(log: AuditLog) -> Break | None:
    """The first stored snapshot that is not what its aggregate's events give."""
    wanted: dict[UUID, list[tuple[int, type[Aggregate]]]] = {}
    for aggregate_id, version, tag in log.snapshot_keys():
        kind = _KINDS.get(tag)
        if aggregate_id is None or kind is None:  # the others are never read
            continue
        if type(version) is not int:  # SQLite keeps text in an INTEGER column (review)
            return Break(
                kind=BreakKind.EDITED,
                position=0,
                detail=f"a snapshot of {kind.aggregate_type} {aggregate_id} names the version"
                f" {str(version)[:40]!r}, which is no version: reads may start from it"
                " (forged or altered)",
            )
        wanted.setdefault(aggregate_id, []).append((version, kind))
    for aggregate_id, snapshots in wanted.items():
        broken = _check_aggregate(log, aggregate_id, sorted(snapshots, key=_version_of))
        if broken is not None:
            return broken
    return None


def _version_of(snapshot_key: tuple[int, type[Aggregate]]) -> int:
    return snapshot_key[0]


def _check_aggregate(
    log: AuditLog, aggregate_id: UUID, snapshots: Iterable[tuple[int, type[Aggregate]]]
) -> Break | None:
    """Replay the aggregate once, comparing each of its snapshots as the replay
    reaches its version."""
    aggregate: Aggregate | None = None
    for version, kind in snapshots:
        aggregate = _replayed(log, aggregate_id, aggregate, version)
        state = log.snapshot_state(aggregate_id, version)
        problem = None if state is None else _problem(kind, aggregate, version, state)
        if problem is not None:
            return Break(
                kind=BreakKind.EDITED,
                position=log.position_of(aggregate_id, version) or 0,
                detail=f"the snapshot of {kind.aggregate_type} {aggregate_id} at version"
                f" {version} {problem}: reads from it would show a state no event"
                " recorded (forged or altered)",
            )
    return None


def _replayed(
    log: AuditLog, aggregate_id: UUID, aggregate: Aggregate | None, upto: int
) -> Aggregate | None:
    """`aggregate` (None: nothing yet) with its events up to version `upto` applied."""
    while True:
        after = 0 if aggregate is None else aggregate.version
        page = log.aggregate_events(aggregate_id, after, upto, REPLAY_PAGE)
        for stored in page:
            aggregate = codec.sealed_event(stored).mutate(aggregate)
        if len(page) < REPLAY_PAGE:
            return aggregate


def _problem(
    kind: type[Aggregate], aggregate: Aggregate | None, version: int, state: bytes
) -> str | None:
    """What is wrong with a snapshot of `kind` at `version` holding `state`, given the
    aggregate its events give up to there; None if nothing."""
    if aggregate is None or aggregate.version != version:
        reached = "no event" if aggregate is None else f"events up to version {aggregate.version}"
        return f"names a version its events do not reach (it has {reached})"
    if not isinstance(aggregate, kind):
        return f"is a {kind.aggregate_type}'s, but its events are a {aggregate.aggregate_type}'s"
    decoder = _DECODERS[kind]
    try:
        held = decoder.decode(state)
    except msgspec.DecodeError as error:
        return f"does not decode ({error})"
    fields = _differing(held, decoder.decode(snapshot(aggregate)))
    return None if not fields else f"differs from its events in {', '.join(fields)}"


def _differing(held: msgspec.Struct, given: msgspec.Struct) -> list[str]:
    """The fields that differ, a mapping's order included (answers list it so)."""
    return [
        name
        for name in held.__struct_fields__
        if (a := getattr(held, name)) != (b := getattr(given, name))
        or (isinstance(a, dict) and list(a) != list(b))
    ]
