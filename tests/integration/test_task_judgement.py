"""Through the API on the embedded store: a task's assignee may not undo how their work
is judged with `task.write` alone (the red team's story: the assignee reopened a task
their manager had rated 1, completed it again, and `/v1/stats/tasks` lost the 1, for a
colleague to rate it 5; or moved a due time of 2020 and completed "on time")."""

from __future__ import annotations

from typing import Any

from tests.integration.api_support import Client, EmbeddedApi

PROBLEM = "application/problem+json"


class Desk:
    """Ann, an agent of support, at work on her own tasks; Lee, her manager, judges it."""

    def __init__(self, api: EmbeddedApi, client: Client) -> None:
        self.api, self.client = api, client
        self.ann = api.token("ann", "support", "agent")
        self.lee = api.token("lee", "support", "manager")
        customer = {"name": "Ann Lee", "owner_department": "support"}
        self.customer = self.ok("POST", "/v1/customers", self.ann, customer)["id"]

    def send(self, method: str, url: str, who: dict[str, str], body: Any = None) -> Any:
        return self.client.request(method, url, json=body or {}, headers=who)

    def ok(self, method: str, url: str, who: dict[str, str], body: Any = None) -> Any:
        answer = self.send(method, url, who, body)
        assert answer.status_code in (200, 201), (url, answer.text)
        return answer.json()

    def done_task(self, **fields: Any) -> str:
        """Ann's own task, started and completed by her."""
        body = {"customer_id": self.customer, "title": "call back", "assignee": "ann"}
        task: str = self.ok("POST", "/v1/tasks", self.ann, body | fields)["id"]
        self.ok("POST", f"/v1/tasks/{task}/start", self.ann)
        self.ok("POST", f"/v1/tasks/{task}/complete", self.ann, {"resolution": "done"})
        return task

    def figures(self) -> dict[str, Any]:
        self.api.catch_up()
        query = {"department": "support", "agent": "ann"}
        answer = self.client.get("/v1/stats/tasks", params=query, headers=self.lee)
        assert answer.status_code == 200, answer.text
        figures: dict[str, Any] = answer.json()
        return figures


def refused(answer: Any) -> str:
    """The problem type of a 403 a business rule gave."""
    assert answer.status_code == 403, answer.text
    assert answer.headers["content-type"].startswith(PROBLEM)
    problem_type: str = answer.json()["type"]
    return problem_type


def test_the_assignee_may_not_reopen_their_evaluated_task(api: EmbeddedApi, client: Client) -> None:
    desk = Desk(api, client)
    task = desk.done_task()
    desk.ok("POST", f"/v1/tasks/{task}/evaluation", desk.lee, {"score": 1, "feedback": "poor"})
    reopen = desk.send("POST", f"/v1/tasks/{task}/reopen", desk.ann, {"reason": "more to do"})
    assert refused(reopen).endswith("/not-allowed")
    assert "assignee may not reopen" in reopen.json()["detail"]
    figures = desk.figures()
    assert (figures["completed"], figures["evaluations"], figures["mean_evaluation"]) == (1, 1, 1.0)
    assert desk.ok("GET", f"/v1/tasks/{task}", desk.ann)["status"] == "completed"


def test_the_assignee_may_not_move_a_due_time_that_has_passed(
    api: EmbeddedApi, client: Client
) -> None:
    desk = Desk(api, client)
    body = {"customer_id": desk.customer, "title": "late", "assignee": "ann"}
    task = desk.ok("POST", "/v1/tasks", desk.ann, body | {"due_at": "2020-01-01T00:00:00Z"})["id"]
    desk.ok("POST", f"/v1/tasks/{task}/start", desk.ann)
    moved = desk.send("PATCH", f"/v1/tasks/{task}", desk.ann, {"due_at": "2099-01-01T00:00:00Z"})
    assert refused(moved).endswith("/not-allowed")
    desk.ok("POST", f"/v1/tasks/{task}/complete", desk.ann, {"resolution": "done"})
    figures = desk.figures()
    assert (figures["completed_late"], figures["on_time_rate"]) == (1, 0.0)
