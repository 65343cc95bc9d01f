"""`crm audit history ID` and `crm audit as-of ID TIME`, on both stores: every event
opened, the state at an instant, read a page at a time (`CrmApplication.stored_events`),
so a customer's history of any length costs flat memory."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from litestar.testing import TestClient

from services import event_store
from services.cli import main
from tests.integration.api_support import embedded_api


@pytest.mark.parametrize("store", ["sqlite", "postgres"])
def test_audit_history_and_as_of_read_their_events_a_page_at_a_time(
    store: str,
    request: pytest.FixtureRequest,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    url = request.getfixturevalue("pg_url") if store == "postgres" else None
    monkeypatch.setattr(event_store, "READ_PAGE", 2)  # five events: three pages
    with embedded_api(tmp_path, database_url=url) as api, TestClient(api.app) as client:
        sales = api.token("sam", "sales", "agent")
        answer = client.post("/v1/customers", json={"name": "Ada 0"}, headers=sales)
        customer = answer.json()["id"]
        for n in range(1, 5):
            patched = client.patch(
                f"/v1/customers/{customer}", json={"name": f"Ada {n}"}, headers=sales
            )
            assert patched.status_code == 200, patched.text
    monkeypatch.setenv("CRM_DATA_DIR", str(tmp_path))
    if url is None:
        monkeypatch.delenv("CRM_DATABASE_URL", raising=False)
    else:
        monkeypatch.setenv("CRM_DATABASE_URL", url)
    capsys.readouterr()

    assert main(["audit", "history", customer]) == 0
    events: list[dict[str, Any]] = [
        json.loads(line) for line in capsys.readouterr().out.splitlines()
    ]
    assert [e["originator_version"] for e in events] == [1, 2, 3, 4, 5]
    assert [e["name"] for e in events] == [f"Ada {n}" for n in range(5)]  # opened

    assert main(["audit", "as-of", customer, events[2]["occurred_at"]]) == 0
    state = json.loads(capsys.readouterr().out)
    assert (state["version"], state["name"]) == (3, "Ada 2")
    assert main(["audit", "as-of", customer, "1999-01-01T00:00:00+00:00"]) == 1
    assert main(["audit", "history", "00000000-0000-0000-0000-000000000000"]) == 1
