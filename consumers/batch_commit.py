"""Committing one batch of one projection, the events that make it fail dead-lettered.

`commit` runs `consumers.projecting.project` in one read-model transaction. A transient
error of the store (connection lost, disk full, database locked) propagates: the caller
retries the whole batch later, nothing is lost. Any other failure is caused by some
event's values (one a store cannot hold, or a bug in the writing code), so `commit`
finds the events that fail by halving the batch, in order, and writes each as a dead
letter with the error: one bad event never stops a projection, and
`crm projections retry` re-applies it after a fix (`retry_letters`).

I/O: the read-model store passed in (one transaction per half tried).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

from consumers.projecting import Item, Outcome, project, reason
from consumers.readmodel_store import ReadModelStore, StoredLetter
from projections.base import Projection


def commit(
    store: ReadModelStore,
    projection: Projection,
    generation: int,
    items: list[Item],
    lag: int | None = None,
    *,
    retry: bool = False,
    in_order: bool = True,
) -> Outcome:
    """`project` in one transaction, the events that make it fail dead-lettered (see the
    module docstring); raises only the store's transient errors, or an error that even
    a dead letter cannot be written through."""

    def again(part: list[Item]) -> Outcome:
        return commit(store, projection, generation, part, lag, retry=retry, in_order=in_order)

    try:
        with store.session(projection, generation) as session:
            return project(session, projection, items, lag, retry=retry, in_order=in_order)
    except Exception as error:  # an event's values: found by halving, by design
        if isinstance(error, store.transient_errors) and not isinstance(error, store.value_errors):
            raise
        if len(items) <= 1:
            if not items or items[0].error is not None:
                raise
            return again([items[0]._replace(error=reason(error))])
    half = len(items) // 2
    return again(items[:half]) + again(items[half:])


class Retried(NamedTuple):
    """What `crm projections retry` did: dead letters retried, still failing, and now
    rejected (letters that an older version kept, of records it applies no more)."""

    retried: int
    failing: int
    rejected: int


def retry_letters(
    store: ReadModelStore,
    projection: Projection,
    items_of: Callable[[list[StoredLetter]], list[Item]],
) -> Retried:
    """Re-apply the live generation's dead letters, read back as items by `items_of`.
    Those failing again are dead letters again (`commit`)."""
    generation = store.install(projection)
    with store.session(projection, generation) as session:
        letters = session.dead_letters()
    items = items_of(letters)
    outcome = commit(store, projection, generation, items, retry=True)
    return Retried(len(items), outcome.dead, outcome.rejected)
