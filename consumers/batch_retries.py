"""Committing a projection's batch, retried through the store's transient errors.

Both writers (`consumers.projection_writer`; the child's `consumers.writer_process`)
commit through `commit_batch`: rows, offsets and applied versions in one read-model
transaction (`consumers.batch_commit.commit`, which dead-letters the events that fail),
retried on the store's transient errors, `MAX_RETRY_DELAY` apart at most, until it
commits. A batch is *abandoned* (nothing written) when the runner stops during a retry,
or when the live generation it was written to has been replaced by a rebuild (its
schema may be gone). Each failed attempt is told as a `Retrying` notice, which the
runner reports (an unreachable database as one outage, `consumers.outage`).

In: a batch of items and its lag. Out: a `Written`. I/O: the read-model database,
through the store; a log line per retry (`log_retry`).
"""

from __future__ import annotations

import time
from collections.abc import Callable

import structlog

from consumers.batch_commit import commit
from consumers.pg_pool import DATABASE_UNAVAILABLE
from consumers.projecting import Item
from consumers.readmodel_store import ReadModelStore
from consumers.writer_messages import Retrying, Written
from projections.base import Projection

log = structlog.get_logger("crm.projections")

MAX_RETRY_DELAY = 5.0
OnRetry = Callable[[Retrying], None]


def log_retry(projection: str, notice: Retrying) -> None:
    log.warning("batch_retry", projection=projection, error=notice.error, delay=notice.delay)


def commit_batch(
    store: ReadModelStore,
    projection: Projection,
    generation: int,
    batch: tuple[list[Item], int | None],
    *,
    follow_live: bool,
    wait: Callable[[float], bool],
    on_retry: Callable[[Retrying], None],
) -> Written:
    """Apply a batch (items, lag) in one transaction; retry transient errors (see above).

    `wait(seconds)` pauses between attempts; True means the runner stops.
    """
    items, lag = batch
    delay = 0.1
    while True:
        began, started = time.time(), time.perf_counter()
        try:
            outcome = commit(store, projection, generation, items, lag)  # dead-letters bad events
        except store.transient_errors as error:
            if follow_live and _replaced(store, projection.name, generation):
                return Written(len(items), lag, abandoned=True)
            unavailable = isinstance(error, DATABASE_UNAVAILABLE)
            reason = f"{type(error).__name__}: {error}"
            on_retry(Retrying(reason, delay, unavailable, began))
            if wait(delay):
                return Written(len(items), lag, abandoned=True)
            delay = min(delay * 2, MAX_RETRY_DELAY)
            continue
        seconds = time.perf_counter() - started
        return Written(
            len(items), lag, outcome.applied, outcome.skipped, outcome.dead, outcome.rejected,
            seconds,
        )  # fmt: skip


def _replaced(store: ReadModelStore, name: str, generation: int) -> bool:
    try:
        return store.live_generation(name) != generation
    except store.transient_errors:
        return False  # the database is still away: keep retrying
