"""A 429 `too-many-queries` is the caller's own load; waiting for other principals'
queries is a 503 `query-timeout`, and is bounded by the read deadline.

A read-model query takes its principal's turn, then a place shared with other
principals' queries (embedded, the one worker thread a slow query moves to; on
PostgreSQL, the list share of the read connections). Before, a principal's query held
its turn while it queued, without a bound, for a place others' queries held, and its
principal's next query, waiting for the turn, was refused 429 "by its own queries".
The slowness is made as in `test_read_deadlines`: a view that takes seconds to count
(SQLite), a lock the test holds on the read model's table (PostgreSQL).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest
from litestar.testing import TestClient

from services.api.direct_reads import DirectReadModels
from services.api.http_errors import SharedReadsBusy, TooManyQueries
from services.api.loop_reads import event_source, read_models_on_loop
from services.api.problem_table import problem_for
from services.api.read_models import ReadModels
from services.pg_read_connections import LIST_SHARE, LIST_SHARE_EACH
from services.pg_reads import PostgresReads
from services.read_deadline import QueryTimeoutError
from tests.integration.api_support import Client, EmbeddedApi, embedded_api
from tests.integration.test_read_deadlines import (
    _customers_locked,
    _registered,
    slow_sqlite_api,  # noqa: F401 - a fixture of these tests too
)

pytestmark = pytest.mark.integration

GUARD = 20.0
"""How long a test waits for a query it expects to end by its deadline (well under a
second) before it calls the wait unbounded: a hang guard, no measure of speed."""


def page(models: ReadModels) -> object:
    return models.customers("sales", tag=None, cursor=None, limit=5)


async def ended(
    run: Callable[[Callable[[ReadModels], object], str], Awaitable[object]], principal: str
) -> BaseException | None:
    """What a department page of `principal`'s ended with (None: answered)."""
    try:
        await run(page, principal)
    except (QueryTimeoutError, TooManyQueries) as error:
        return error
    return None


async def settled() -> None:
    """Every task that can run has run up to its next wait."""
    for _ in range(5):
        await asyncio.sleep(0)


def is_503_query_timeout(error: BaseException | None) -> bool:
    return error is not None and problem_for(error)[:2] == (503, "query-timeout")


def test_a_query_waiting_behind_its_own_that_queues_for_others_is_no_429_embedded(
    slow_sqlite_api: tuple[EmbeddedApi, Client, dict[str, str]],  # noqa: F811 - the fixture
) -> None:
    """bob's slow page holds the worker thread; ann's slow page, holding ann's one turn,
    queues for it; ann's next page waits for her turn past the deadline. Its wait was
    bob's query's, so it is a 503 `query-timeout`; before, a 429 `too-many-queries`."""
    models = slow_sqlite_api[0].app.state.services.queries_on_loop
    assert isinstance(models, DirectReadModels)

    async def scenario() -> list[BaseException | None]:
        return list(await asyncio.gather(*(ended(models.run, p) for p in ["bob", "ann", "ann"])))

    bob, ann_first, ann_next = asyncio.run(scenario())
    assert not isinstance(ann_next, TooManyQueries), ann_next
    assert is_503_query_timeout(ann_next), ann_next
    assert is_503_query_timeout(ann_first), ann_first
    assert is_503_query_timeout(bob), bob


def test_a_query_waiting_for_the_worker_thread_ends_by_its_deadline_embedded(
    slow_sqlite_api: tuple[EmbeddedApi, Client, dict[str, str]],  # noqa: F811 - the fixture
) -> None:
    """While the worker thread stays taken (here by the test, as by other principals'
    slow queries one after another), ann's slow page waits for it at most the deadline
    and is a 503 `query-timeout`; before, it waited for as long as the thread was taken."""
    models = slow_sqlite_api[0].app.state.services.queries_on_loop
    assert isinstance(models, DirectReadModels)

    async def scenario() -> BaseException | None:
        async with models._off_loop_turn:  # the worker thread, taken
            query = asyncio.create_task(ended(models.run, "ann"))
            done, _ = await asyncio.wait({query}, timeout=GUARD)
            assert done, "ann's query waited for the worker thread past its deadline"
        return query.result()

    error = asyncio.run(scenario())
    assert isinstance(error, SharedReadsBusy), error
    assert is_503_query_timeout(error)


def test_two_principals_filling_the_list_share_get_no_429_for_each_other_on_postgres(
    pg_url: str, tmp_path: Path
) -> None:
    """ann's `LIST_SHARE_EACH` stuck pages and bob's fill the list share: bob's past it
    hold his turns while they queue for a place. Those end by their deadline, and bob's
    next page, waiting for his turn, is a 503 `query-timeout`, not a 429: his turns were
    held by a wait for ann's queries. Before, the queued ones waited until the lock
    went, and bob's next page was a 429 "by its own queries". (The statements' own
    deadline is longer than the turns', so the stuck pages outlast every wait.)"""
    with embedded_api(tmp_path, database_url=pg_url) as api:
        with TestClient(api.app) as client:
            _registered(api, client)
        with _customers_locked(pg_url, api) as release:
            queued, bob_next, running = asyncio.run(_filled_share(api, pg_url, release.set))
    assert running == [None] * LIST_SHARE  # answered once the lock went
    assert len(queued) == 2 * LIST_SHARE_EACH - LIST_SHARE  # bob's past the share
    assert all(isinstance(e, SharedReadsBusy) for e in queued), queued
    assert not isinstance(bob_next, TooManyQueries), bob_next
    assert is_503_query_timeout(bob_next), bob_next


async def _filled_share(
    api: EmbeddedApi, pg_url: str, release: Callable[[], None]
) -> tuple[list[BaseException | None], BaseException | None, list[BaseException | None]]:
    """ann's and bob's stuck pages (the share full, two of bob's queued), and bob's next;
    the lock is released once the queued ones and bob's next ended."""
    reads = event_source(api.runtime.app, api.runtime.keyring.store, pg_url, 60.0)
    assert isinstance(reads, PostgresReads)
    models = read_models_on_loop(ReadModels(api.store), reads, api.runtime.app.recorder, 0.3)
    try:
        tasks = [asyncio.create_task(ended(models.run, "ann")) for _ in range(LIST_SHARE_EACH)]
        await settled()
        tasks += [asyncio.create_task(ended(models.run, "bob")) for _ in range(LIST_SHARE_EACH)]
        await settled()
        bob_next = asyncio.create_task(ended(models.run, "bob"))
        waited = [*tasks[LIST_SHARE:], bob_next]
        done, _ = await asyncio.wait(waited, timeout=GUARD)
        assert len(done) == len(waited), "a wait for a list connection outlived its deadline"
        release()
        running = [await task for task in tasks[:LIST_SHARE]]
        return [t.result() for t in tasks[LIST_SHARE:]], bob_next.result(), running
    finally:
        await models.aclose()
        await reads.aclose()
