"""`crm audit access ID` and `crm audit verify-access`: the access log from the command line.

Reads as the operator `crm audit` reads as (`services.cli_audit_past.operator`: an
auditor's rights, decided by the access model). `access` prints the records naming a
customer as JSON lines, oldest first; `verify-access` recomputes the access log's hash
chain and names its first break (edited, deleted, inserted, reordered), exit 1, a record
filed under another principal, time or customers than it says being an edit.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from contextlib import closing
from typing import Any, Protocol
from uuid import UUID

import msgspec

from domain.chain_walk import Break, ChainWalk, Entry, Link
from services.bootstrap import Runtime, bootstrap
from services.cli_args import add_range, calendar_time
from services.settings import Settings

PAGE = 5000


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
        "verify-access", help="recompute the access log's hash chain; name the first break"
    )
    verify.set_defaults(handler=_verify_access)


def _store(runtime: Runtime) -> Any:
    from services.access import Forbidden, rule_name
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
        count, broken = verify_access(store)
    if broken is not None:
        print(f"crm audit verify-access: {broken}", file=sys.stderr)
        return 1
    print(f"access log intact: {count} records")
    return 0


class _Filed(Protocol):
    """What `verify-access` reads of an access store (`services.access_log_store`)."""

    def entries(self, after: int, upto: int, limit: int) -> list[Entry]: ...

    def links(self, after: int, upto: int) -> list[Link]: ...

    def misfiled(self, entries: Sequence[Entry]) -> Break | None: ...


def verify_access(store: _Filed) -> tuple[int, Break | None]:
    """Walk the access log's chain page by page, and check that every record is filed
    (principal, time, customers: the columns queries filter on) as it says. The
    records walked, and the first break."""
    walk = ChainWalk()
    after, end = 0, (1 << 63) - 1
    while entries := store.entries(after, end, PAGE):
        upto = entries[-1][0] if len(entries) == PAGE else end
        if broken := _first_break(store, walk, entries, store.links(after, upto)):
            return walk.count, broken
        after = upto
    return walk.count, walk.feed([], store.links(after, end))


def _first_break(
    store: _Filed, walk: ChainWalk, entries: list[Entry], links: list[Link]
) -> Break | None:
    """The chain's break in this page, or an earlier record filed otherwise than it says
    (checked only for the records the chain vouches for)."""
    broken = walk.feed(entries, links)
    vouched = [e for e in entries if broken is None or e[0] < broken.position]
    return store.misfiled(vouched) or broken
