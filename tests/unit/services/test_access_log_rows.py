"""A page's record: the customers whose rows show something unmasked, each once and in
order, and the union of the columns any row shows (masked, erased or empty show nothing)."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

from domain.base import ERASED, MASKED
from services.access.rules import Principal, Role
from services.access_log import AccessLog, decode, rows_shown
from services.access_log_store import SqliteAccessStore

WHO = Principal(name="max", department="sales", role=Role.MANAGER)


def test_a_page_names_the_customers_its_rows_show_and_the_columns_they_show(
    tmp_path: Path,
) -> None:
    ada, bob, eve, ida = sorted(uuid.uuid4() for _ in range(4))
    agent, other = ["name", "email"], ["email"]  # two kinds of access on one page
    rows: list[tuple[dict[str, Any], list[str]]] = [
        ({"customer_id": bob, "name": None, "email": "b@x.io"}, agent),
        ({"customer_id": eve, "name": ERASED, "email": MASKED}, agent),  # shows nothing
        ({"customer_id": ada, "name": "Ada", "email": None}, other),  # name not its to see
        ({"customer_id": bob, "name": "Bob", "email": None}, agent),  # a second row of bob
        ({"customer_id": ida, "name": "Ida", "email": "i@x.io"}, []),
    ]
    customers, fields = rows_shown(rows, "customer_id")
    assert customers == [bob, bob]
    assert fields == {"name", "email"}
    store = SqliteAccessStore(tmp_path / "access.db")
    log = AccessLog(store)
    log.record(WHO, "GET /v1/departments/{department}/{view}", [ida, *customers, ada], fields)
    log.record(WHO, "GET /v1/departments/{department}/{view}", [], {"name"})  # nothing shown
    log.record(WHO, "GET /v1/departments/{department}/{view}", [ada], set())
    log.flush()
    ((position, stored),) = store.records(0, 10)
    record = decode(position, stored).record
    assert record.customers == [ada, bob, ida]
    assert record.fields == ["email", "name"]
    store.close()
