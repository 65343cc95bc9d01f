"""`crm audit access ID` and `crm audit verify-access`: the access log from the command line.

Reads as the operator `crm audit` reads as (`services.cli_audit_past.operator`: an
auditor's rights, decided by the access model). `access` prints the records naming a
customer as JSON lines, oldest first; `verify-access` recomputes the access log's hash
chain and names its first break (edited, deleted, inserted, reordered), exit 1, a record
filed under another principal, time or customers than it says being an edit. A store
ending below the position the relay recorded as published (`crm_access_published`)
lost its tail; with `--kafka`, every record on the access topic must be what the store
holds (`services.access_kafka`), which still holds when that row was lowered too.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from contextlib import closing
from typing import TYPE_CHECKING, Any, Protocol
from uuid import UUID

import msgspec

from domain.chain_walk import Break, ChainWalk, Entry, Link, below_published
from services.bootstrap import Runtime, bootstrap, require_kafka
from services.cli_args import add_range, calendar_time
from services.settings import Settings

if TYPE_CHECKING:  # at run time only `--kafka` needs them (the CLI imports every command)
    from services.access_kafka import AccessKafkaComparison
    from services.audit_verify import Comparison

PAGE = 5000
END = (1 << 63) - 1
_LOWERED = (
    "an intruder who removes records may lower crm_access_published as well, unseen here:"
    " `--kafka` compares what the topic holds"
)


def register(actions: argparse._SubParsersAction[Any]) -> None:
    access = actions.add_parser(
        "access", help="who read a customer's personal data unmasked (JSON lines)"
    )
    access.add_argument("id", type=UUID, help="the customer")
    access.add_argument("--principal", help="only what this principal read")
    add_range(
        access,
        calendar_time,
        metavar="TIME",
        first="records read at or after TIME (with a zone)",
        last="records read before TIME (with a zone)",
    )
    access.set_defaults(handler=_access)
    verify = actions.add_parser(
        "verify-access",
        help="recompute the access log's hash chain; name the first break",
        description="Recompute the access log's hash chain, check that each record is filed"
        " as it says and that the log still reaches the position the relay recorded as"
        " published, and name the first break. The chain is not signed: a chain rewritten"
        " whole, or a tail removed with crm_access_published lowered, shows only against"
        " what the relay published (--kafka).",
        epilog="exit status: 0 intact; 1 a break (edited, deleted, inserted, reordered);"
        " 2 configuration or usage error",
    )
    verify.add_argument(
        "--kafka", action="store_true", help="also check every record on the access topic"
    )
    verify.set_defaults(handler=_verify_access)


def _store(runtime: Runtime) -> Any:
    from services.access.rules import Forbidden, rule_name
    from services.access_log_store import open_access_store
    from services.cli_audit_past import operator as operator_principal

    operator = operator_principal()
    if not runtime.access.may(operator, "audit.read"):
        raise Forbidden(rule_name(operator, "audit.read"), "audit.read is for auditors")
    return open_access_store(runtime.pool, runtime.settings.data_dir)


def _access(args: argparse.Namespace, settings: Settings) -> int:
    from services.access_log import decode

    with closing(bootstrap(settings)) as runtime, closing(_store(runtime)) as store:
        after = 0
        while rows := store.select(
            customer=args.id, principal=args.principal, start=args.start, end=args.end,
            after=after, limit=PAGE,
        ):  # fmt: skip
            for position, record in rows:
                sys.stdout.write(msgspec.json.encode(decode(position, record)).decode() + "\n")
            after = rows[-1][0]
    return 0


def _verify_access(args: argparse.Namespace, settings: Settings) -> int:
    with closing(bootstrap(settings)) as runtime, closing(_store(runtime)) as store:
        kafka = _kafka(settings) if args.kafka else None
        count, broken = verify_access(store, () if kafka is None else (kafka,))
    if broken is not None:
        print(f"crm audit verify-access: {broken}", file=sys.stderr)
        return 1
    matched = "" if kafka is None else f", as are the {kafka.records} records on Kafka"
    print(f"access log intact: {count} records{matched}")
    return 0


def _kafka(settings: Settings) -> AccessKafkaComparison:
    """The access topic's records, read once (after the access model let the operator in)."""
    from services.access_kafka import access_kafka_comparison

    require_kafka(settings)
    return access_kafka_comparison(settings.kafka_bootstrap, settings.topic_prefix)


class _Filed(Protocol):
    """What `verify-access` reads of an access store (`services.access_log_store`)."""

    def entries(self, after: int, upto: int, limit: int) -> list[Entry]: ...

    def links(self, after: int, upto: int) -> list[Link]: ...

    def misfiled(self, entries: Sequence[Entry]) -> Break | None: ...

    def highest_published(self) -> int | Break: ...

    def last_position(self) -> int: ...


def verify_access(
    store: _Filed, comparisons: Sequence[Comparison] = ()
) -> tuple[int, Break | None]:
    """Walk the access log's chain page by page, and check that every record is filed
    (principal, time, customers: the columns queries filter on) as it says, and is what
    each of `comparisons` holds; then that the store still reaches what the relay
    published. The records walked, and the first break."""
    published = store.highest_published()  # before the walk: the store held it by then
    if isinstance(published, Break):
        return 0, published
    # The log as it stands now: records the API stores meanwhile are the next run's. A
    # walk to END met their links without their entries (a busy log was "deleted", 12
    # runs of 12, red team), and one chasing them might never end.
    end = store.last_position()
    walk = ChainWalk()
    after = 0
    while entries := store.entries(after, end, PAGE):
        upto = entries[-1][0] if len(entries) == PAGE else end
        links = store.links(after, upto)
        if broken := _first_break(store, walk, entries, links, comparisons):
            return walk.count, broken
        after = upto
    return walk.count, (
        _finished(comparisons, walk.position)
        or below_published(published, walk.position, "access records", _LOWERED)
    )


def _first_break(
    store: _Filed,
    walk: ChainWalk,
    entries: list[Entry],
    links: list[Link],
    comparisons: Sequence[Comparison],
) -> Break | None:
    """The chain's break in this page, or an earlier record filed otherwise than it says
    or contradicted by a comparison (checked only for the records the chain vouches for)."""
    broken = walk.feed(entries, links)
    vouched = [e for e in entries if broken is None or e[0] < broken.position]
    compared = (b for c in comparisons if (b := c.compare(vouched)) is not None)
    return store.misfiled(vouched) or next(compared, None) or broken


def _finished(comparisons: Sequence[Comparison], last: int) -> Break | None:
    """What a comparison holds past the walk of the store's positions `1..last`."""
    return next((b for c in comparisons if (b := c.finish(1, last, END)) is not None), None)
