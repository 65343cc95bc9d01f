"""On PostgreSQL a list's own statement says which of its rows lag behind the event store
(`services.api.awaited_reads`): the page it reads is the list's page, row for row, column
for column and in order, and the aggregates it says are behind are exactly those with
events their projection has not applied, for every list a page is judged of (a search,
which may ask a statement first, by a statement of its own). So is it once a rebuild
switched the projection to a generation the reader had not named yet (the one it named
dropped). `test_lagging_read_models` shows what the access model then makes of those
rows, through HTTP, on both stores.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from uuid import UUID

import pytest
from litestar.testing import TestClient

from consumers.blind_index import company_prefix
from consumers.follower import rebuild_from_store
from projections import PROJECTIONS
from services.access.findable import Findable
from services.api.awaited_reads import BEHIND, AwaitedReadModels
from services.api.loop_reads import event_source, read_models_on_loop
from services.api.read_models import ROWS, SEARCHED, Page, ReadModels
from services.pg_reads import PostgresReads
from tests.integration.api_support import Client, EmbeddedApi, embedded_api

pytestmark = pytest.mark.integration

List = Callable[[ReadModels], Page]


class Work:
    """Three customers of sales shared with support, each with a conversation and a task
    of support's (the second conversation waiting, the second task due: NULLs and values
    in both orders' keys)."""

    def __init__(self, client: Client, sales: dict[str, str], support: dict[str, str]) -> None:
        self.sales, self.support = sales, support
        self.customers: list[str] = []
        self.conversations: list[str] = []
        self.tasks: list[str] = []
        for n in range(3):
            registered = {"name": f"C {n}", "company": f"Acme {n}"}
            customer = _ok(client, "POST", "/v1/customers", sales, registered)["id"]
            _ok(
                client, "POST", f"/v1/customers/{customer}/shares", sales, {"department": "support"}
            )
            opened = {
                "customer_id": customer,
                "department": "support",
                "channel": "phone",
                "subject": "S",
            }
            conversation = _ok(client, "POST", "/v1/conversations", support, opened)["id"]
            task: dict[str, Any] = {"customer_id": customer, "department": "support", "title": "T"}
            if n == 1:
                inbound = {"direction": "inbound", "author": "c", "content": "?"}
                _ok(client, "POST", f"/v1/conversations/{conversation}/messages", support, inbound)
                task["due_at"] = "2030-01-01T10:00:00Z"
            self.customers.append(customer)
            self.conversations.append(conversation)
            self.tasks.append(_ok(client, "POST", "/v1/tasks", support, task)["id"])

    def lists(self) -> dict[str, List]:
        """Each list a page is judged of, by the name of its rows (`ROWS`; a search's are
        `SEARCHED`)."""
        return {
            "customers": lambda m: m.customers("sales", tag=None, cursor=None, limit=50),
            "conversations": lambda m: m.conversations(
                "support", status=None, cursor=None, limit=50
            ),
            "tasks": lambda m: m.tasks(
                "support", status=None, assignee=None, cursor=None, limit=50
            ),
            "timeline": lambda m: m.timeline(
                UUID(self.customers[1]), department=None, cursor=None, limit=50
            ),
            "search": lambda m: m.search(  # a start past 3 characters: a statement first
                terms=[],
                company=company_prefix("Acme"),
                tag=None,
                findable=Findable(department="sales", consenting=False),
                cursor=None,
                limit=50,
            ),
        }


@pytest.fixture
def api(pg_url: str, tmp_path: Path) -> Iterator[tuple[EmbeddedApi, Client, Work]]:
    with (
        embedded_api(tmp_path, database_url=pg_url) as embedded,
        TestClient(embedded.app) as client,
    ):
        sales = embedded.token("sam", "sales", "manager")
        work = Work(client, sales, embedded.token("sue", "support", "manager"))
        embedded.catch_up()
        yield embedded, client, work


def _ok(client: Client, method: str, url: str, headers: dict[str, str], body: Any) -> Any:
    answer = client.request(method, url, json=body, headers=headers)
    assert answer.is_success, answer.text
    return answer.json()


def _models(api: EmbeddedApi) -> tuple[AwaitedReadModels, PostgresReads]:
    """The read models as the API awaits them, on a connection pool of the test's loop."""
    runtime = api.runtime
    reads = event_source(runtime.app, runtime.keyring.store, runtime.settings.database_url)
    assert isinstance(reads, PostgresReads)
    models = read_models_on_loop(ReadModels(api.store), reads, runtime.app.recorder)
    assert isinstance(models, AwaitedReadModels)
    return models, reads


async def _judged(api: EmbeddedApi, lists: dict[str, List]) -> dict[str, set[UUID]]:
    """Of each list, the aggregates its folded statement says are behind, once its page
    is checked against the list's own (the statement unfolded)."""
    models, reads = _models(api)
    try:
        found = {}
        for name, query in lists.items():
            page, behind = await models.behind(query, ROWS.get(name, SEARCHED), "tester")
            plain = await models.run(query, "tester")
            assert page == plain, name
            assert [list(row) for row in page["items"]] == [list(row) for row in plain["items"]]
            assert not any(BEHIND in row for row in page["items"]), name
            found[name] = behind
        return found
    finally:
        await models.aclose()
        await reads.aclose()


def _changed(client: Client, work: Work, customer: int, conversation: int, task: int) -> None:
    """An event of the customer, the conversation and the task so numbered, not applied."""
    url = f"/v1/customers/{work.customers[customer]}"
    _ok(client, "PATCH", url, work.sales, {"company": "Co"})
    note = {"direction": "outbound", "author": "sue", "content": "!"}
    url = f"/v1/conversations/{work.conversations[conversation]}/messages"
    _ok(client, "POST", url, work.support, note)
    _ok(client, "PATCH", f"/v1/tasks/{work.tasks[task]}", work.support, {"title": "T 2"})


def test_a_list_statement_says_exactly_which_rows_lag(
    api: tuple[EmbeddedApi, Client, Work],
) -> None:
    embedded, client, work = api
    lists = work.lists()
    caught_up = asyncio.run(_judged(embedded, lists))
    assert caught_up == {name: set() for name in lists}

    _changed(client, work, customer=0, conversation=1, task=2)  # not applied
    lagging = asyncio.run(_judged(embedded, lists))
    assert lagging == {
        "customers": {UUID(work.customers[0])},
        "conversations": {UUID(work.conversations[1])},
        "tasks": {UUID(work.tasks[2])},
        "timeline": {UUID(work.conversations[1])},  # the second customer's
        "search": {UUID(work.customers[0])},
    }


def test_a_rebuilt_generation_is_named_once_the_one_named_is_dropped(
    api: tuple[EmbeddedApi, Client, Work],
) -> None:
    """The reader names the generation it read before; a rebuild's switch dropped it, so
    its statement fails and is asked again of the live one (not asked again, every page
    would be a 503 `read-model-not-built` until the process restarted)."""
    embedded, client, work = api
    lists = {"customers": work.lists()["customers"]}

    async def before_and_after() -> tuple[set[UUID], set[UUID]]:
        models, reads = _models(embedded)
        try:
            _, before = await models.behind(lists["customers"], ROWS["customers"], "tester")
            rebuild_from_store(embedded.runtime.app, embedded.store, PROJECTIONS["shared"])
            _changed(client, work, 2, 2, 2)  # not applied to the rebuilt generation
            _, after = await models.behind(lists["customers"], ROWS["customers"], "tester")
            return before, after
        finally:
            await models.aclose()
            await reads.aclose()

    assert embedded.store.live_generation("shared") == 1
    before, after = asyncio.run(before_and_after())
    assert embedded.store.live_generation("shared") == 2
    assert (before, after) == (set(), {UUID(work.customers[2])})
