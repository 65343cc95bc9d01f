"""The collaboration scenario end to end: real PostgreSQL, Kafka and `crm` processes.

Support takes a customer's call and hands the conversation to sales; sales answers and
closes it; a follow-up task is created, reassigned, completed and evaluated; CSAT and
NPS are answered for it and for a second, unhappy support conversation. The department
views and statistics then show exactly the expected figures. Every read passes the
`position` of the last command as `min_position` (read-your-writes), never a sleep.
Finally an erasure shows as `[erased]` in the department view.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.e2e.processes import Processes, crm_processes, free_port, wait_for_http

PROJECTIONS = ("sales", "support", "stats", "shared", "marketing")
PEOPLE = {
    "sue": ("support", "agent"),
    "sam": ("sales", "agent"),
    "sal": ("sales", "agent"),
    "max": ("sales", "manager"),
    "ann": ("analytics", "analyst"),
    "survey": ("integration", "service"),
    "root": ("it", "admin"),
}


class Api:
    """The HTTP API as the scenario's people; remembers the newest position."""

    def __init__(self, base: str, tokens: dict[str, str]) -> None:
        self.http = httpx.Client(base_url=base, timeout=60)
        self.tokens = tokens
        self.position = 0

    def do(self, who: str, path: str, body: dict[str, Any] | None = None) -> str:
        response = self.http.post(path, json=body or {}, headers=self._auth(who))
        assert response.status_code in (200, 201), (who, path, response.text)
        answer = response.json()
        self.position = max(self.position, answer["position"])
        return str(answer["id"])

    def read(self, who: str, path: str, **params: Any) -> Any:
        params["min_position"] = self.position
        response = self.http.get(path, params=params, headers=self._auth(who))
        assert response.status_code == 200, (who, path, response.text)
        return response.json()

    def _auth(self, who: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.tokens[who]}"}


@pytest.fixture
def api(pg_url: str, kafka_bootstrap: str, topic_prefix: str, tmp_path: Path) -> Any:
    env = {
        "CRM_DATABASE_URL": pg_url,
        "CRM_KAFKA_BOOTSTRAP": kafka_bootstrap,
        "CRM_TOPIC_PREFIX": topic_prefix,
        "CRM_DATA_DIR": str(tmp_path / "data"),
        "CRM_READ_WAIT_SECONDS": "60",  # the consumers join their groups while we wait
    }
    with crm_processes(env, tmp_path) as crm:
        yield _start(crm)


def _start(crm: Processes) -> Api:
    crm.run("topics", "ensure", "--partitions", "3")
    tokens = {
        name: crm.run("principals", "add", name, "--department", dept, "--role", role)
        .strip()
        .splitlines()[-1]
        for name, (dept, role) in PEOPLE.items()
    }
    port = free_port()
    server = crm.start("api", "--port", str(port))
    crm.start("relay")
    for name in PROJECTIONS:
        crm.start("consume", name)
    base = f"http://127.0.0.1:{port}"
    wait_for_http(base, server)
    return Api(base, tokens)


def _scenario(api: Api) -> dict[str, str]:
    ada = api.do("sam", "/v1/customers", {"name": "Ada Lovelace", "email": "ada@example.com"})
    api.do("sam", f"/v1/customers/{ada}/shares", {"department": "support"})
    call = {"customer_id": ada, "channel": "phone", "subject": "Upgrade?", "department": "support"}
    handed = api.do("sue", "/v1/conversations", call)
    inbound = {"direction": "inbound", "author": "Ada", "content": "Need a quote"}
    api.do("sue", f"/v1/conversations/{handed}/messages", inbound)
    api.do(
        "sue", f"/v1/conversations/{handed}/handoffs", {"to_department": "sales", "to_agent": "sam"}
    )
    reply = {"direction": "outbound", "author": "sam", "content": "Quote sent"}
    api.do("sam", f"/v1/conversations/{handed}/messages", reply)
    api.do("sam", f"/v1/conversations/{handed}/close", {"outcome": "resolved"})
    api.do("survey", f"/v1/conversations/{handed}/csat", {"score": 5})
    api.do("survey", f"/v1/conversations/{handed}/nps", {"score": 9})
    unhappy = api.do("sue", "/v1/conversations", call | {"subject": "Invoice"})
    api.do("sue", f"/v1/conversations/{unhappy}/close", {"outcome": "unresolved"})
    api.do("survey", f"/v1/conversations/{unhappy}/csat", {"score": 2})
    api.do("survey", f"/v1/conversations/{unhappy}/nps", {"score": 3})
    due = (datetime.now(UTC) + timedelta(days=2)).isoformat()
    task = {"customer_id": ada, "title": "Send contract", "assignee": "sam", "due_at": due}
    task_id = api.do("sam", "/v1/tasks", task | {"conversation_id": handed})
    api.do("max", f"/v1/tasks/{task_id}/assignment", {"assignee": "sal", "reason": "holiday"})
    api.do("sal", f"/v1/tasks/{task_id}/start")
    api.do("sal", f"/v1/tasks/{task_id}/complete", {"resolution": "signed"})
    api.do("max", f"/v1/tasks/{task_id}/evaluation", {"score": 4})
    return {"ada": ada, "handed": handed, "unhappy": unhappy, "task": task_id}


def test_collaboration_figures_and_erasure(api: Api) -> None:
    ids = _scenario(api)
    _check_department_views(api, ids)
    _check_statistics(api)
    api.do("root", f"/v1/customers/{ids['ada']}/erasure", {"reason": "GDPR request"})
    customers = api.read("sam", "/v1/departments/sales/customers")["items"]
    assert [(c["name"], c["email"]) for c in customers] == [("[erased]", "[erased]")]


def _check_department_views(api: Api, ids: dict[str, str]) -> None:
    customers = api.read("sam", "/v1/departments/sales/customers")["items"]
    assert [(c["customer_id"], c["email"]) for c in customers] == [(ids["ada"], "ada@example.com")]
    analyst = api.read("ann", "/v1/departments/sales/customers")["items"]
    assert analyst[0]["email"] == "[masked]"
    closed = api.read("sam", "/v1/departments/sales/conversations", status="closed")["items"]
    assert [(c["conversation_id"], c["handoffs"], c["agent"]) for c in closed] == [
        (ids["handed"], 1, "sam")
    ]
    support = api.read("sue", "/v1/departments/support/conversations", status="closed")["items"]
    assert [(c["conversation_id"], c["handoffs"]) for c in support] == [(ids["unhappy"], 0)]
    tasks = api.read("max", "/v1/departments/sales/tasks")["items"]
    assert [(t["task_id"], t["assignee"], t["status"], t["overdue"]) for t in tasks] == [
        (ids["task"], "sal", "completed", False)
    ]
    timeline = api.read("sam", f"/v1/customers/{ids['ada']}/timeline")["items"]
    assert {"Need a quote", "Quote sent"} <= {entry["content"] for entry in timeline}


def _check_statistics(api: Api) -> None:
    def total(who: str, **scope: str) -> tuple[Any, ...]:
        found = api.read(who, "/v1/stats/satisfaction", **scope)["total"]
        return found["csat_answers"], found["csat"], found["nps_answers"], found["nps"]

    assert total("ann") == (2, 50.0, 2, 0.0)  # 1 of 2 CSAT 4-5; 1 promoter, 1 detractor
    assert total("max", department="sales") == (1, 100.0, 1, 100.0)
    assert total("ann", department="support") == (1, 0.0, 1, -100.0)
    assert total("ann", department="sales", agent="sam") == (1, 100.0, 1, 100.0)
    tasks = api.read("max", "/v1/stats/tasks", department="sales")
    figures = ("created", "completed", "completed_on_time", "reassignments", "evaluations")
    assert {name: int(tasks[name]) for name in figures} == {
        "created": 1, "completed": 1, "completed_on_time": 1, "reassignments": 1, "evaluations": 1,
    }  # fmt: skip
    assert (tasks["on_time_rate"], tasks["mean_evaluation"]) == (100.0, 4.0)
