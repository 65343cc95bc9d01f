"""The read-side queries give the same answers on PostgreSQL and SQLite."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, datetime
from functools import partial
from itertools import accumulate
from pathlib import Path
from typing import Any
from uuid import uuid4

import pytest
from prometheus_client import CollectorRegistry, generate_latest

from bench.workload import Workload
from consumers import readmodel_queries as rq
from consumers import stats_queries as sq
from consumers.projecting import Item, project
from consumers.projection_metrics import register_projection_metrics
from consumers.readmodel_store import ReadModelStore
from domain.customer import Customer
from projections import PROJECTIONS
from projections.satisfaction import ALL
from tests.integration.projection_support import open_store
from tests.unit.domain.factories import ctx

Row = dict[str, Any]
EVENTS = list(Workload(seed=13).events(3000))
NOW = datetime(2024, 1, 10, tzinfo=UTC)


@pytest.fixture(params=["sqlite", "postgres"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[ReadModelStore]:
    opened = open_store(request, tmp_path)
    items = [Item("t", 0, i, i + 1, b"", e) for i, e in enumerate(EVENTS)]
    for projection in PROJECTIONS.values():
        generation = opened.install(projection)
        with opened.session(projection, generation) as session:
            project(session, projection, items)
    yield opened
    opened.close()


def test_department_customers_page_by_cursor(store: ReadModelStore) -> None:
    first = rq.department_customers(store, "sales", limit=10)
    second = rq.department_customers(store, "sales", after=first[-1]["customer_id"], limit=10)
    assert len(first) == 10
    assert str(first[-1]["customer_id"]) < str(second[0]["customer_id"])
    assert all(not row["archived"] for row in first + second)


def test_department_customers_by_tag_with_their_email_consent(store: ReadModelStore) -> None:
    everyone = rq.department_customers(store, "sales", limit=10_000)
    tags = {tag for row in everyone for tag in row["tags"]}
    assert tags
    for tag in tags:
        tagged = rq.department_customers(store, "sales", tag=tag, limit=10_000)
        expected = [r["customer_id"] for r in everyone if tag in r["tags"]]
        assert [r["customer_id"] for r in tagged] == expected
    wildcard = rq.department_customers(store, "sales", tag="%", limit=10_000)
    assert wildcard == []  # LIKE wildcards in a tag are matched literally
    marketing = store.fetch(
        "SELECT customer_id, email_marketing FROM {k}",
        {"k": "marketing.customers"},
        {},
        {"customer_id": "uuid", "email_marketing": "bool"},
    )
    consents = {row["customer_id"]: bool(row["email_marketing"]) for row in marketing}
    assert any(consents.values())
    assert [bool(r["email_marketing"]) for r in everyone] == [
        consents.get(r["customer_id"], False) for r in everyone
    ]


def pages(fetch: Callable[..., list[Row]], keys: Sequence[rq.SortKey]) -> list[Row]:
    """Every row of a list, fetched 3 at a time by keyset."""
    rows: list[Row] = []
    while True:
        after = [rows[-1][k.column] for k in keys] if rows else None
        page = fetch(after=after, limit=3)
        rows += page
        if len(page) < 3:
            return rows


def test_keyset_pages_give_the_whole_list_once_in_order(store: ReadModelStore) -> None:
    def ids(rows: list[Row], column: str) -> list[Any]:
        return [row[column] for row in rows]

    for status in ("open", "closed"):
        queue = partial(rq.department_conversations, store, "support", status=status)
        whole = queue(limit=10_000)
        assert len(whole) > 3
        assert any(row["waiting_since"] is None for row in whole)  # NULLs are paged too
        assert ids(pages(queue, rq.QUEUE_ORDER), "conversation_id") == ids(whole, "conversation_id")
    for department in ("sales", "support"):
        board = partial(rq.department_tasks, store, department, NOW)
        whole = board(limit=10_000)
        assert len(whole) > 3
        assert ids(pages(board, rq.BOARD_ORDER), "task_id") == ids(whole, "task_id")
    busiest = store.fetch(
        "SELECT customer_id, count(*) AS n FROM {t} GROUP BY customer_id ORDER BY n DESC LIMIT 1",
        {"t": "shared.timeline"},
        {},
    )
    history = partial(rq.timeline, store, busiest[0]["customer_id"])
    whole = history(limit=10_000)
    assert len(whole) > 3
    assert ids(pages(history, rq.TIMELINE_ORDER), "entry_id") == ids(whole, "entry_id")


def test_a_timeline_page_stops_at_the_entry_that_fills_its_bytes(store: ReadModelStore) -> None:
    """With `max_bytes`, entries stop at the first whose author and content (sealed, as
    stored) bring the page to the bound, each telling the page's bytes up to it; an
    entry larger than the bound still makes a page of its own."""
    busiest = store.fetch(
        "SELECT customer_id, count(*) AS n FROM {t} GROUP BY customer_id ORDER BY n DESC LIMIT 1",
        {"t": "shared.timeline"},
        {},
    )
    customer = busiest[0]["customer_id"]
    everyone = rq.timeline(store, customer, limit=10_000)
    assert sum(bool(row["content"]) for row in everyone) > 3  # entries with text to bound
    for department in (None, "sales", "support"):
        history = partial(rq.timeline, store, customer, department=department, limit=10_000)
        whole = history()
        assert whole, department
        sizes = [len((r["author"] or "").encode() + (r["content"] or "").encode()) for r in whole]
        for bound in (1, sizes[0] + 1, sum(sizes) // 2, sum(sizes), sum(sizes) + 1):
            page = history(max_bytes=bound)
            expected = _filled(whole, sizes, bound)
            assert [row.pop("page_bytes") for row in page] == list(accumulate(sizes[: len(page)]))
            assert page == expected, (department, bound)


def _filled(rows: list[Row], sizes: list[int], bound: int) -> list[Row]:
    """The reference: rows taken while the page holds fewer than `bound` bytes."""
    page: list[Row] = []
    held = 0
    for row, size in zip(rows, sizes, strict=True):
        if held >= bound:
            break
        page.append(row)
        held += size
    return page


def test_queue_board_360_and_timeline(store: ReadModelStore) -> None:
    queue = rq.department_conversations(store, "support")
    assert queue
    assert all(row["status"] == "open" for row in queue)
    board = rq.department_tasks(store, "sales", NOW)
    assert any(row["overdue"] for row in board)
    customer = rq.customer_360(store, board[0]["customer_id"])
    assert customer is not None
    assert customer["orders"] is not None
    assert rq.timeline(store, board[0]["customer_id"])


def test_satisfaction_and_task_stats(store: ReadModelStore) -> None:
    (total,) = sq.satisfaction_stats(store)
    assert total["csat_answers"] > 0
    assert total["csat"] is not None
    days = sq.satisfaction_stats(store, granularity="day", start=NOW)
    assert all(str(row["bucket"]) >= "2024-01-10" for row in days)
    (ranged,) = sq.satisfaction_stats(store, start=NOW)
    assert ranged["csat_answers"] == sum(int(r["csat_answers"]) for r in days)
    tasks = sq.task_stats(store)
    assert tasks["created"] > 0
    assert tasks["p90_seconds"] is not None
    assert sq.percentile([1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0, 10.0], 90) == 9.0


def test_task_durations_are_summed_up_by_the_database_as_from_every_duration(
    store: ReadModelStore,
) -> None:
    """The mean and the nearest-rank p90 of each filter's durations, worked out by the
    database (every duration was read into the API and sorted there: ~1.1 s of the event
    loop a request at a million), are those of the durations read one by one."""
    rows = store.fetch("SELECT * FROM {d}", {"d": "stats.task_durations"}, {})
    pairs = sorted({(r["department"], r["assignee"]) for r in rows})
    assert len(pairs) > 1
    departments = sorted({(d, None) for d, _ in pairs})
    filters = [(None, None), *departments, *pairs[:4], (None, pairs[0][1])]
    for department, assignee in filters:
        durations = sorted(
            float(r["seconds"])
            for r in rows
            if department in (None, r["department"]) and assignee in (None, r["assignee"])
        )
        figures = sq.task_stats(store, department=department, assignee=assignee)
        assert figures["p90_seconds"] == sq.percentile(durations, 90), (department, assignee)
        mean = sum(durations) / len(durations)
        assert figures["mean_seconds"] == pytest.approx(mean, abs=0.001), (department, assignee)


def test_a_filter_naming_the_all_key_selects_no_row(store: ReadModelStore) -> None:
    """No name is `ALL`: sent as one, it must not answer everyone's counters."""
    assert sq.satisfaction_stats(store)[0]["csat_answers"] > 0
    assert sq.satisfaction_stats(store, agent=ALL) == []
    assert sq.satisfaction_stats(store, department=ALL, granularity="day") == []
    assert sq.task_stats(store, assignee=ALL).get("created") is None
    assert sq.task_stats(store, department=ALL)["p90_seconds"] is None


def test_metrics_expose_lag_and_dead_letters(store: ReadModelStore) -> None:
    registry = CollectorRegistry()
    register_projection_metrics(store, registry)
    text = generate_latest(registry).decode()
    assert 'crm_projection_dead_letters{projection="sales"} 0.0' in text
    assert 'crm_projection_events{projection="stats"} 3000.0' in text


@pytest.fixture(params=["sqlite", "postgres"])
def empty_store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[ReadModelStore]:
    opened = open_store(request, tmp_path)
    yield opened
    opened.close()


def test_a_row_s_email_is_judged_by_the_consent_as_of_the_same_event(
    empty_store: ReadModelStore,
) -> None:
    """Each projection has its consumer, applying at its own pace. The department list
    and the search took the e-mail from `shared` and the consent from `marketing`: with
    marketing behind (a withdrawal not yet applied there), a row showed marketing staff
    an e-mail stored after the withdrawal. The consent now comes with the e-mail."""
    ada = Customer.register(
        ctx(), customer_id=uuid4(), name="Ada", email="ada@example.com",
        owner_department="marketing", consents={"email_marketing": True},
    )  # fmt: skip
    registered = ada.collect_events()
    ada.set_consent(ctx(minutes=1), "email_marketing", False)
    ada.update_profile(ctx(minutes=2), email="ada@new.example")
    later = ada.collect_events()
    fed = {"shared": registered + later, "marketing": registered}  # marketing behind
    for name, events in fed.items():
        projection = PROJECTIONS[name]
        generation = empty_store.install(projection)
        with empty_store.session(projection, generation) as session:
            project(
                session, projection, [Item("t", 0, i, i + 1, b"", e) for i, e in enumerate(events)]
            )
    (row,) = rq.department_customers(empty_store, "marketing")
    assert (row["email"], row["email_marketing"]) == ("ada@new.example", False)
