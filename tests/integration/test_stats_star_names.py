"""An agent or assignee named `*` through HTTP: counted once, as itself, in the
department's statistics, and `agent=*` selects that agent's figures, not everyone's
(the "all" rows used to be keyed `*`, so such a name counted twice)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from litestar.testing import TestClient

from tests.integration.api_support import embedded_api

Client = TestClient[Any]


def post(client: Client, url: str, body: dict[str, Any], headers: dict[str, str]) -> Any:
    response = client.post(url, json=body, headers=headers)
    assert response.status_code in (200, 201), (url, response.text)
    return response.json()["id"]


def rated(client: Client, headers: dict[str, str], agent: str, score: int) -> None:
    customer = {"name": "Ada", "owner_department": "support"}
    cid = post(client, "/v1/customers", customer, headers)
    opened = {"customer_id": cid, "channel": "email", "subject": "hi",
              "department": "support", "agent": agent}  # fmt: skip
    conversation = post(client, "/v1/conversations", opened, headers)
    post(client, f"/v1/conversations/{conversation}/close", {"outcome": "resolved"}, headers)
    post(client, f"/v1/conversations/{conversation}/csat", {"score": score}, headers)


def assigned(client: Client, headers: dict[str, str], assignee: str) -> None:
    cid = post(client, "/v1/customers", {"name": "Bo", "owner_department": "marketing"}, headers)
    task = {"customer_id": cid, "title": "call", "department": "marketing", "assignee": assignee}
    post(client, "/v1/tasks", task, headers)


def test_an_agent_and_an_assignee_named_star_count_once(tmp_path: Path) -> None:
    with embedded_api(tmp_path) as api, TestClient(app=api.app) as client:
        admin = api.token("root", "support", "admin")
        rated(client, admin, "*", 5)
        rated(client, admin, "alice", 1)
        assigned(client, admin, "*")
        assigned(client, admin, "bob")
        api.catch_up()

        def get(path: str, **params: str) -> Any:
            response = client.get(path, params=params, headers=admin)
            assert response.status_code == 200, response.text
            return response.json()["total"] if "satisfaction" in path else response.json()

        support = get("/v1/stats/satisfaction", department="support", granularity="month")
        assert (support["csat_answers"], support["csat"]) == (2, 50.0)
        assert (support["department"], support["agent"]) == ("support", None)
        star = get("/v1/stats/satisfaction", department="support", agent="*")
        assert (star["csat_answers"], star["csat"], star["agent"]) == (1, 100.0, "*")
        assert get("/v1/stats/satisfaction", agent=" (all)")["csat_answers"] == 0
        assert get("/v1/stats/tasks", department="marketing")["created"] == 2
        assert get("/v1/stats/tasks", department="marketing", agent="*")["created"] == 1
        assert get("/v1/stats/tasks", agent=" (all)").get("created") is None
