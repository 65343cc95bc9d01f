"""`crm audit seal-existing`: chain a log recorded before the hash chain existed.

Once, after the upgrade: under the store's write lock (writers wait, so run it before
starting the API), every link is dropped and the whole log is chained again from the
genesis in position order, so events recorded before the chain and any recorded since
form one chain. It refuses once a checkpoint has been signed: a signed chain is never
rewritten, and an unchained event in a signed log is a forgery for `crm audit verify`
to report. (The checkpointer refuses to sign while unchained events exist.)

I/O: the audit log, inside one exclusive transaction.
"""

from __future__ import annotations

from collections.abc import Callable

from domain.hashchain import GENESIS, chain_rows
from services.audit_log import END, AuditLog

PAGE = 5000


class SealRefused(Exception):  # noqa: N818 - reads as what happened
    """The log is already signed; rewriting its chain would hide tampering."""


def seal_existing(log: AuditLog, progress: Callable[[int], None] = lambda _: None) -> int:
    """Chain the whole log if some events lack links; how many events were chained."""
    with log.exclusive() as locked:
        if locked.unchained() == 0:
            return 0
        if locked.checkpoints(limit=1):
            raise SealRefused(
                "checkpoints are already signed over this log: its unchained events were "
                "added behind the chain's back (run `crm audit verify`)"
            )
        locked.drop_links()
        after, head, count = 0, GENESIS, 0
        while entries := locked.entries(after, END, PAGE):
            positions = [position for position, _ in entries]
            links = chain_rows(after, head, positions, [c for _, c in entries])
            locked.append_links(links)
            after, head = links[-1][0], links[-1][2]
            count += len(entries)
            progress(len(entries))
        return count
