"""`crm audit verify`: recompute the chain over the store, check it against the signed
checkpoints (signature, chain head, Merkle tree head), and name the first break.

Checkpoints come from the store, and optionally from a file an auditor kept and from
Kafka. What a checkpoint that fails its signature under the pinned public key means
depends on who can write where it came from:

* the store's, and the auditor's file (`--checkpoints`: the API's answer, which serves
  the store's, or what `crm audit checkpoint` printed), are evidence someone answers
  for: one that fails is the store or the kept copy altered (or the wrong key pinned),
  a break itself, reported before anything is walked;
* Kafka's (`untrusted`: topic `crm.audit.checkpoints.v1`, which any client with produce
  rights can write) prove nothing about the store unless the pinned key signed them:
  one that fails is *ignored* (counted in `Report.ignored`, its position named), and
  the walk uses the ones that verify. Otherwise one junk record, kept forever, would
  fail every later `verify --kafka`, and would hide the break (a truncation) that the
  genuine checkpoints beside it exist to catch.

The walk (`domain.chain_walk`) reads the log page by page; a `Comparison` (the Kafka
check) sees the same pages. An edit that fits another event of the next
`REORDER_WINDOW` events put back in place is reported as a reordering. A row
the store holds in another form than it writes (`Malformed`) is an edit, whatever its
bytes hash to: the application no longer reads it as the event the chain links.

What no signature covers yet is said, not passed over: how many events lie after the
last signed checkpoint (an intruder may delete them, links and all, unseen), and
whether any checkpoint anchored the walk at all (an empty store and one wiped of its
events, links and checkpoints look alike). Where the relay keeps its position
(PostgreSQL), a head below what the relay already published is a deletion. An event
stored below position 1, where no walk reads but the application does (it loads by
aggregate id and version), is an insertion, whatever the range walked. A walk of the
whole log that found it intact then checks every snapshot against the events
(`services.audit_snapshots`): a read starts from one, so a forged one is an edit.

I/O: the audit log; signature checks (`services.audit_keys`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import NamedTuple, Protocol

import msgspec

from domain.chain_walk import (
    Break,
    BreakKind,
    ChainWalk,
    Entry,
    Link,
    below_published,
    relinked_elsewhere,
    stray,
)
from domain.checkpoint import Checkpoint
from domain.hashchain import CanonicalEvent
from services.audit_keys import signature_valid
from services.audit_log import END, PAGE_BYTES, AuditLog, Malformed, pages
from services.audit_snapshots import check_snapshots

REORDER_WINDOW = 10_000
PAGE = 5000
IGNORED_NAMED = 5
"""Ignored checkpoints whose positions a report names (the first read); the rest are
counted only: whoever writes them could write millions."""


class Comparison(Protocol):
    """Something else checked against every page of the log (e.g. what Kafka holds)."""

    def compare(self, entries: Sequence[Entry]) -> Break | None: ...

    def finish(self, first: int, last: int, end: int) -> Break | None:
        """After the walk of positions `first..last` of the store, asked to check up to
        `end`: what was never compared."""
        ...


class Report(msgspec.Struct, kw_only=True):
    events: int = 0
    first: int | None = None
    last: int = 0
    chain_head: str = ""
    checkpoints: int = 0
    """Signed checkpoints the walk matched (one that failed is not counted)."""
    signed_upto: int | None = None
    """The position of the last signed checkpoint in the range walked, if any."""
    unsigned: int = 0
    """Events walked after `signed_upto` (all of them if None): no signature covers them."""
    tree_checked: bool = True
    broken: Break | None = None
    ignored: int = 0
    """Untrusted checkpoints (Kafka's) the pinned key did not sign: not used."""
    ignored_positions: list[int] = msgspec.field(default_factory=list)
    """The positions the first `IGNORED_NAMED` of them claim."""


def verify_log(
    log: AuditLog,
    checkpoints: Iterable[Checkpoint],
    public_key: bytes,
    *,
    start: int | None = None,
    end: int | None = None,
    untrusted: Iterable[Checkpoint] = (),
    comparisons: Sequence[Comparison] = (),
    progress: Callable[[int], None] = lambda _: None,
) -> Report:
    """Walk positions `start..end` (default: all) and report the first break, if any;
    after a whole walk, check the snapshots too. `checkpoints` are evidence (a bad
    signature is a break); `untrusted` ones come from a channel anyone may write (a bad
    signature is ignored): see the module docstring."""
    whole = not start and end is None
    signed, forged, ignored = _signed(checkpoints, untrusted, public_key)
    if forged is not None:
        return Report(broken=forged, ignored=ignored.records, ignored_positions=ignored.positions)
    end = END if end is None else end
    upto = min(end, log.last_position())  # checkpoints up to `end` may lie past a truncation
    walk = _start(log, start, [c for c in signed if (start or 0) <= c.position <= end])
    report = Report(tree_checked=walk.tree is not None)
    report.ignored, report.ignored_positions = ignored.records, ignored.positions
    after = walk.position
    broken = _walk(log, walk, report, upto=upto, comparisons=comparisons, progress=progress)
    report.broken = (
        broken
        or next((b for c in comparisons if (b := c.finish(after + 1, upto, end)) is not None), None)
        or _below_relay(log, upto, end)
        or _stray(log)
        or (check_snapshots(log) if whole else None)
    )
    report.events, report.last, report.chain_head = walk.count, walk.position, walk.chain.hex()
    report.checkpoints = walk.checked - (1 if _failed_checkpoint(walk, report.broken) else 0)
    _unsigned(log, walk, report, [c.position for c in signed if after < c.position <= upto])
    return report


def _unsigned(log: AuditLog, walk: ChainWalk, report: Report, positions: list[int]) -> None:
    """How many walked events no checkpoint signs: those after the last one in range."""
    report.signed_upto = max(positions, default=None)
    if report.signed_upto is None:
        report.unsigned = walk.count  # from the start, or from `start` on: what was walked
    elif walk.position > report.signed_upto:
        report.unsigned = log.count_between(report.signed_upto, walk.position)


def _failed_checkpoint(walk: ChainWalk, broken: Break | None) -> bool:
    """Whether the break is the last checkpoint the walk checked (counted as checked by
    `ChainWalk`, not as matched): it sits where the walk stopped and names it."""
    return (
        broken is not None
        and walk.checked > 0
        and broken.position == walk.position
        and broken.detail.startswith("the checkpoint signed at")
    )


def _stray(log: AuditLog) -> Break | None:
    """An event below position 1, which no range walks: in every verify, whatever its
    `--from` and `--to` (the application reads it whatever the range)."""
    found = log.first_stray()
    return None if found is None else stray(found.position, str(found))


def _below_relay(log: AuditLog, upto: int, end: int) -> Break | None:
    """A head below the position the relay already published: events were removed."""
    published = log.relay_position()
    if published is None or end < published:
        return None
    return below_published(published, upto, "events", "`--kafka` compares what the topics hold")


def _walk(
    log: AuditLog,
    walk: ChainWalk,
    report: Report,
    *,
    upto: int,
    comparisons: Sequence[Comparison],
    progress: Callable[[int], None],
) -> Break | None:
    """The first break of the chain, a checkpoint or a comparison, page by page."""
    for page, page_links in pages(log, walk.position, upto, PAGE):
        report.first = page[0][0] if report.first is None and page else report.first
        malformed = next((e for e in page if type(e[1]) is Malformed), None)
        entries, links = _before(malformed, page, page_links)  # walk up to it: it is the break
        broken = walk.feed(entries, links) or _compare(comparisons, entries)
        progress(len(entries))
        if broken is not None:
            return _reordered(log, walk, broken, links, upto) or broken
        if malformed is not None:
            return _edited_in_place(*malformed)
    return walk.finish()


def _before(
    malformed: Entry | None, entries: list[Entry], links: list[Link]
) -> tuple[list[Entry], list[Link]]:
    if malformed is None:
        return entries, links
    return [e for e in entries if e[0] < malformed[0]], [k for k in links if k[0] < malformed[0]]


def _edited_in_place(position: int, canonical: bytes) -> Break:
    reason = canonical.reason if isinstance(canonical, Malformed) else "not as stored"
    return Break(
        kind=BreakKind.EDITED,
        position=position,
        detail=f"{CanonicalEvent(canonical)} is not stored as the store writes it: {reason}",
    )


class Ignored(NamedTuple):
    """Untrusted checkpoints the pinned key did not sign: how many, and the positions
    the first `IGNORED_NAMED` claim."""

    records: int
    positions: list[int]


def _signed(
    checkpoints: Iterable[Checkpoint], untrusted: Iterable[Checkpoint], public_key: bytes
) -> tuple[list[Checkpoint], Break | None, Ignored]:
    """The distinct checkpoints the pinned key signed; the break of the first (by
    position) of `checkpoints` it did not sign, if any; the `untrusted` ones it did not.

    Each copy is checked before copies are merged: a junk copy of a genuine checkpoint
    (its signature changed) must not stand in for it."""
    evidence = list(dict.fromkeys(checkpoints))
    valid = {c: None for c in evidence if signature_valid(public_key, c)}
    forged = min((c for c in evidence if c not in valid), key=_position, default=None)
    ignored = _add_untrusted(valid, untrusted, public_key)
    distinct = {(c.position, c.tree_size, c.chain_head, c.tree_head): c for c in valid}
    broken = None if forged is None else _forged(forged, public_key)
    return list(distinct.values()), broken, ignored


def _position(checkpoint: Checkpoint) -> int:
    return checkpoint.position


def _add_untrusted(
    valid: dict[Checkpoint, None], untrusted: Iterable[Checkpoint], public_key: bytes
) -> Ignored:
    """Add to `valid` the untrusted checkpoints the pinned key signed; the others are
    read as they come and only counted: whoever writes them could write millions."""
    count, named = 0, list[int]()
    for checkpoint in untrusted:
        if checkpoint in valid or signature_valid(public_key, checkpoint):
            valid[checkpoint] = None
        else:
            count += 1
            named += [checkpoint.position][: IGNORED_NAMED - len(named)]
    return Ignored(count, named)


def _forged(checkpoint: Checkpoint, public_key: bytes) -> Break:
    named = "another key" if checkpoint.public_key != public_key.hex() else "this key"
    return Break(
        kind=BreakKind.EDITED,
        position=checkpoint.position,
        detail=f"the checkpoint signed at {checkpoint.signed_at} does not carry a valid"
        f" signature of the pinned key (it names {named}): forged or altered",
    )


def _start(log: AuditLog, start: int | None, checkpoints: list[Checkpoint]) -> ChainWalk:
    """From the log's start, or from the stored link just before `start` (trusted)."""
    before = None if not start else log.link_before(start)
    if before is None:
        return ChainWalk(checkpoints)
    return ChainWalk(checkpoints, position=before[0], chain=before[1])


def _compare(comparisons: Sequence[Comparison], entries: Sequence[Entry]) -> Break | None:
    for comparison in comparisons:
        broken = comparison.compare(entries)
        if broken is not None:
            return broken
    return None


def _reordered(
    log: AuditLog, walk: ChainWalk, broken: Break, links: list[Link], upto: int
) -> Break | None:
    """A reordering, if the broken link fits one of the next events put back in place."""
    if walk.mismatch is None or broken.kind is not BreakKind.EDITED:
        return None
    stored = next(chain for position, _, chain in links if position == broken.position)
    later = log.entries(broken.position, upto, REORDER_WINDOW, PAGE_BYTES)
    return relinked_elsewhere(walk, stored, later)
