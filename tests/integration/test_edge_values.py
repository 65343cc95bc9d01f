"""Values at the edges of what the domain accepts apply on both read-model stores.

Times whose UTC instant lies outside Python's years 1-9999 (0001-01-01T00:00+14:00 is
in year 0, 9999-12-31T23:59:59-23:59 in year 10000) are stored and loaded back as the
same instants, so later events that load their rows apply too.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any
from uuid import UUID, uuid4

import pytest
from litestar.testing import TestClient
from msgspec.structs import replace

from consumers import readmodel_queries as rq
from consumers.projecting import Item, project
from consumers.readmodel_store import ReadModelStore
from domain.base import Context, DomainEvent
from domain.customer import Customer
from domain.task import Task
from projections import PROJECTIONS
from tests.integration.api_support import embedded_api
from tests.integration.projection_support import open_store

FIRST = datetime(1, 1, 1, tzinfo=timezone(timedelta(hours=14)))
LAST = datetime(9999, 12, 31, 23, 59, 59, tzinfo=timezone(-timedelta(hours=23, minutes=59)))


@pytest.fixture(params=["sqlite", "postgres"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[ReadModelStore]:
    opened = open_store(request, tmp_path)
    yield opened
    opened.close()


def now(minutes: int) -> Context:
    at = datetime(2024, 5, 1, tzinfo=UTC) + timedelta(minutes=minutes)
    return Context(actor="ann", actor_department="support", occurred_at=at, correlation_id="c")


def edge_events() -> list[DomainEvent]:
    """The domain refuses such times now (1900-9999 in UTC): these are events stored
    before it did, made by swapping the times into events it decides today."""
    customer = Customer.register(
        now(0), customer_id=uuid4(), name="Ada", owner_department="support"
    )
    customer.record_order(now(1), order_id="o-1", amount="1", currency="EUR")
    task = Task.create(
        now(2), task_id=uuid4(), customer=customer, title="t", due_at=now(9).occurred_at
    )
    customer.change_order_status(now(3), "o-1", "paid")  # loads the order row
    task.change_due(now(4), now(10).occurred_at)  # loads the task row
    registered, ordered, paid = customer.collect_events()
    created, moved = task.collect_events()
    return [
        registered,
        replace(ordered, ordered_at=LAST),
        replace(created, due_at=FIRST),
        paid,
        replace(moved, from_due_at=FIRST, to_due_at=LAST),
    ]


def apply_one_by_one(store: ReadModelStore, events: list[DomainEvent]) -> None:
    for name, projection in PROJECTIONS.items():
        generation = store.install(projection)
        for number, event in enumerate(events):
            with store.session(projection, generation) as session:
                project(session, projection, [Item("t", 0, number, number + 1, b"", event)])
        assert store.status(name).dead_letters == 0, name


def test_times_beyond_the_utc_calendar_apply_and_load_back(store: ReadModelStore) -> None:
    events = edge_events()
    apply_one_by_one(store, events)
    (order,) = dump(store, "shared", "orders")
    assert (order["ordered_at"], order["status"]) == (LAST, "paid")
    (task,) = rq.department_tasks(store, "support", datetime.now(UTC))
    assert task["due_at"] == LAST
    assert not task["overdue"]


def dump(store: ReadModelStore, name: str, table: str) -> list[dict[str, object]]:
    generation = store.live_generation(name)
    assert generation is not None
    spec = next(t for t in PROJECTIONS[name].tables if t.name == table)
    return store.dump(name, generation, spec)


AMOUNTS = {  # as sent (JSON numbers) -> as stored, shown and projected on both stores
    "0E+999999999999999999": "0",
    "-0": "0",
    "-0.00": "0.00",
    "1E+11": "100000000000",
    "12.5E+1": "125",
    "99.90": "99.90",
}


@pytest.mark.parametrize("database", ["sqlite", "postgres"])
def test_an_amount_is_kept_in_one_plain_form(database: str, pg_url: str, tmp_path: Path) -> None:
    """Money without a sign and without an exponent: `-0` and `0E+999999999999999999`
    were stored as sent, shown so by the console, and projected as `0` on PostgreSQL
    but as sent on SQLite. Sent as JSON numbers: as text, an amount is plain decimal
    digits (`test_an_amount_in_text_is_plain_decimal_digits`)."""
    url = pg_url if database == "postgres" else None
    with embedded_api(tmp_path, database_url=url) as api, TestClient(app=api.app) as client:
        admin = api.token("root", "sales", "admin")
        customer = client.post("/v1/customers", json={"name": "Ada"}, headers=admin).json()["id"]
        json_body = admin | {"Content-Type": "application/json"}
        for number, amount in enumerate(AMOUNTS):
            order = f'{{"order_id": "o-{number}", "amount": {amount}, "currency": "EUR"}}'
            orders = f"/v1/customers/{customer}/orders"
            recorded = client.post(orders, content=order, headers=json_body)
            assert recorded.status_code == 200, recorded.text
        api.catch_up()
        shown = client.get(f"/v1/customers/{customer}", headers=admin).json()["orders"]
        projected = rq.customer_360(api.store, UUID(customer))
        assert projected is not None
        expected = list(AMOUNTS.values())
        assert [order["amount"] for order in shown] == expected
        assert [str(order["amount"]) for order in projected["orders"]] == expected


NUMBERS = {  # amounts sent as JSON numbers -> as stored: the digits the client sent
    "99.90": "99.90",
    "0.1": "0.1",
    "1e2": "100",
    "12.5E+1": "125",
    "-0.0": "0.0",
    "7": "7",
}
TOO_PRECISE = ("0.10000000000000001", "1.00000", "1e-5", "1E-400", "1e400", "-1e400")
"""Numbers a float rounded into amounts the domain takes (`0.10000000000000001` was
stored as `0.1`), or that were out of a float's range (a 400 from the JSON decoder)."""


def test_an_amount_sent_as_a_json_number_reaches_the_domain_as_sent(tmp_path: Path) -> None:
    with embedded_api(tmp_path) as api, TestClient(app=api.app) as client:
        admin = api.token("root", "sales", "admin") | {"Content-Type": "application/json"}
        customer = client.post("/v1/customers", json={"name": "Ada"}, headers=admin).json()["id"]
        url = f"/v1/customers/{customer}/orders"
        for number, amount in enumerate([*NUMBERS, *TOO_PRECISE]):
            body = f'{{"order_id": "o-{number}", "amount": {amount}, "currency": "EUR"}}'
            recorded = client.post(url, content=body, headers=admin)
            expected = (422, "amount") if amount in TOO_PRECISE else (200, None)
            assert (recorded.status_code, recorded.json().get("field")) == expected, amount
        shown = client.get(f"/v1/customers/{customer}", headers=admin).json()["orders"]
        assert [order["amount"] for order in shown] == list(NUMBERS.values())


NOT_PLAIN = ("5_000", "\u0665", "\uff11\uff12", "1e3", "1E+11", "-0", "+3", " 7 ", "007", ".5",
             "1.", "NaN", "Infinity", "0x10", "twelve")  # fmt: skip
"""Amounts in text that Python's `Decimal` reads (all but the last two) and that no
amount is written as: `5_000` was stored as 5000, an Arabic-Indic five as 5."""


def test_an_amount_in_text_is_plain_decimal_digits(tmp_path: Path) -> None:
    """Each is a 422 naming the amount and quoting it, as `-1` is, and nothing is stored
    (`0x10` and `twelve` were the schema's 400, `NaN` and `Infinity` a 422, the others
    were recorded); plain digits are kept as written."""
    with embedded_api(tmp_path) as api, TestClient(app=api.app) as client:
        admin = api.token("root", "sales", "admin")
        customer = client.post("/v1/customers", json={"name": "Ada"}, headers=admin).json()["id"]
        url = f"/v1/customers/{customer}/orders"
        for number, amount in enumerate(NOT_PLAIN):
            order = {"order_id": f"o-{number}", "amount": amount, "currency": "EUR"}
            sent = client.post(url, json=order, headers=admin)
            assert (sent.status_code, sent.json().get("field")) == (422, "amount"), sent.text
            assert repr(amount) in sent.json()["detail"], sent.text
        assert api.runtime.app.head_position() == 1
        for amount in ("0", "0.5", "12.50", "999999999999.9999"):
            order = {"order_id": f"o-{amount}", "amount": amount, "currency": "EUR"}
            assert client.post(url, json=order, headers=admin).status_code == 200
        shown = client.get(f"/v1/customers/{customer}", headers=admin).json()["orders"]
        assert [order["amount"] for order in shown] == ["0", "0.5", "12.50", "999999999999.9999"]


SCORES = (  # route, body with {} for the number, an integer it takes
    ("/v1/conversations/{closed}/csat", '{{"score": {}}}', "4"),
    ("/v1/conversations/{closed}/nps", '{{"score": {}}}', "9"),
    ("/v1/tasks/{started}/progress", '{{"note": "n", "percent": {}}}', "50"),
    ("/v1/tasks/{completed}/evaluation", '{{"score": {}}}', "3"),
)
NOT_INTEGERS = ("4.5", "4.0", "1e400", "-1e400", "NaN", "Infinity", '"NaN"')


def test_integer_fields_take_integers_and_refuse_other_numbers(tmp_path: Path) -> None:
    """Scores and percentages, beside amounts read exactly: an integer is taken; a
    fraction, a number out of range, NaN or Infinity is a 400, as it was, and so is
    `4.0` (taken as 4 while every such number passed through a float)."""
    with embedded_api(tmp_path) as api, TestClient(app=api.app) as client:
        admin = api.token("root", "sales", "admin")
        ids = scored_aggregates(client, admin)
        for route, body, integer in SCORES:
            url = route.format(**ids)
            sent = admin | {"Content-Type": "application/json"}
            for number in NOT_INTEGERS:
                refused = client.post(url, content=body.format(number), headers=sent)
                assert refused.status_code == 400, (url, number, refused.text)
            assert client.post(url, content=body.format(integer), headers=sent).status_code == 200


INTEGERS_AS_TEXT = ('"4"', '"4.0"', '"4e0"', '"0.4e1"', '"40e-1"', '"4.9999999999999999"', '"5e1"')
OTHERWISE_TYPED = (  # route, a body whose value is not the JSON type its field says
    ("/v1/customers", '{"name": "Ada", "consents": {"email": "true"}}'),
    ("/v1/customers", '{"name": "Ada", "consents": {"email": 1}}'),
    ("/v1/tasks", '{"customer_id": "{customer}", "title": "t", "due_at": 1000000000}'),
    ("/v1/tasks", '{"customer_id": "{customer}", "title": "t", "due_at": "1e9"}'),
)


def test_a_body_s_values_are_the_json_type_their_field_says(tmp_path: Path) -> None:
    """Bodies are decoded strictly: an integer written as text, a boolean as "true" or
    1, a time as a number (in text or not) is the 400 naming the field that `4.0` is,
    and nothing is stored. The framework converted them leniently: "4", "4e0" and
    "40e-1" were stored as score 4, "4.9999999999999999" (read through a float) as 5,
    "5e1" as 50 %, a consent "true" or 1 as granted, a `due_at` of 1000000000 or "1e9"
    as 2001-09-09 (a Unix timestamp)."""
    with embedded_api(tmp_path) as api, TestClient(app=api.app) as client:
        admin = api.token("root", "sales", "admin")
        ids = scored_aggregates(client, admin)
        customer = client.post("/v1/customers", json={"name": "Ada"}, headers=admin).json()["id"]
        sent = admin | {"Content-Type": "application/json"}
        head = api.runtime.app.head_position()
        for (route, body, _), number in itertools.product(SCORES, INTEGERS_AS_TEXT):
            refused = client.post(route.format(**ids), content=body.format(number), headers=sent)
            assert refused.status_code == 400, (route, number, refused.text)
            assert refused.json()["field"] in ("score", "percent"), refused.text
        for route, body in OTHERWISE_TYPED:
            refused = client.post(route, content=body.replace("{customer}", customer), headers=sent)
            assert refused.status_code == 400, (body, refused.text)
            assert refused.json()["field"] in ("consents[...]", "due_at"), refused.text
        assert api.runtime.app.head_position() == head


def scored_aggregates(client: TestClient[Any], auth: dict[str, str]) -> dict[str, str]:
    """A closed conversation, a started task, and a completed task of someone else's."""

    def sent(url: str, body: dict[str, str]) -> str:
        answer = client.post(url, json=body, headers=auth)
        assert answer.status_code < 300, answer.text
        return str(answer.json()["id"])

    customer = sent("/v1/customers", {"name": "Ada"})
    closed = sent("/v1/conversations", {"customer_id": customer, "channel": "chat", "subject": "s"})
    sent(f"/v1/conversations/{closed}/close", {"outcome": "resolved"})
    started, completed = (
        sent("/v1/tasks", {"customer_id": customer, "title": "t", "assignee": "bob"})
        for _ in range(2)
    )
    for task in (started, completed):
        sent(f"/v1/tasks/{task}/start", {})
    sent(f"/v1/tasks/{completed}/complete", {"resolution": "done"})
    return {"closed": closed, "started": started, "completed": completed}
