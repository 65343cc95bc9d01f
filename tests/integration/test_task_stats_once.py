"""`GET /v1/stats/tasks` through the API on both stores: the on-time rate leaves out the
tasks that had no due time, and a task reopened and done again (or cancelled again)
counts once, by its latest outcome (the red team's story: someone with `task.write`
could pump an assignee's completions and on-time rate by reopening one task)."""

from __future__ import annotations

from typing import Any

from litestar.testing import TestClient

from tests.integration.api_support import EmbeddedApi

Client = TestClient[Any]
FIGURES = ("created", "completed", "completed_on_time", "completed_late", "on_time_rate",
           "evaluations", "mean_evaluation", "cancelled")  # fmt: skip


class Story:
    def __init__(self, api: EmbeddedApi, client: Client) -> None:
        self.api, self.client = api, client
        self.headers = api.token("lead", "support", "admin")
        self.customer = self.post("/v1/customers", {"name": "Ann", "owner_department": "support"})

    def post(self, url: str, body: dict[str, Any] | None = None) -> Any:
        response = self.client.post(url, json=body or {}, headers=self.headers)
        assert response.status_code in (200, 201), (url, response.text)
        return response.json().get("id")

    def task(self, **fields: Any) -> str:
        body = {"customer_id": self.customer, "title": "t", "department": "support",
                "assignee": "ann", **fields}  # fmt: skip
        task_id: str = self.post("/v1/tasks", body)
        return task_id

    def done(self, task: str) -> None:
        self.post(f"/v1/tasks/{task}/start")
        self.post(f"/v1/tasks/{task}/complete", {"resolution": "ok"})

    def reopen(self, task: str) -> None:
        self.post(f"/v1/tasks/{task}/reopen", {"reason": "again"})

    def figures(self, **params: str) -> dict[str, Any]:
        self.api.catch_up()
        query = {"department": "support", "agent": "ann"} | params
        response = self.client.get("/v1/stats/tasks", params=query, headers=self.headers)
        assert response.status_code == 200, response.text
        return {name: response.json()[name] for name in FIGURES}


def expect(figures: dict[str, Any], **values: Any) -> None:
    assert {name: figures[name] for name in values} == values


def test_reopening_counts_a_task_once_and_no_due_time_is_not_late(
    api_on_each_store: EmbeddedApi,
) -> None:
    with TestClient(app=api_on_each_store.app) as client:
        story = Story(api_on_each_store, client)
        a = story.task(due_at="2099-01-01T00:00:00Z")
        story.done(a)
        expect(story.figures(), completed=1, completed_on_time=1, on_time_rate=100.0)
        b = story.task()
        story.done(b)
        expect(story.figures(), created=2, completed=2, completed_on_time=1, completed_late=0,
               on_time_rate=100.0)  # fmt: skip
        for _ in range(3):
            story.reopen(a)
            expect(story.figures(), completed=1, completed_on_time=0, on_time_rate=None)
            story.done(a)
        expect(story.figures(), created=2, completed=2, completed_on_time=1, on_time_rate=100.0)
        story.post(f"/v1/tasks/{a}/evaluation", {"score": 4})
        story.reopen(a)
        expect(story.figures(), completed=1, evaluations=0, mean_evaluation=None)
        story.done(a)
        story.post(f"/v1/tasks/{a}/evaluation", {"score": 2})
        expect(story.figures(), completed=2, evaluations=1, mean_evaluation=2.0)


def test_cancelling_again_counts_one_cancellation(api_on_each_store: EmbeddedApi) -> None:
    with TestClient(app=api_on_each_store.app) as client:
        story = Story(api_on_each_store, client)
        c = story.task(due_at="2000-01-01T00:00:00Z")
        story.post(f"/v1/tasks/{c}/cancel", {"reason": "no"})
        story.reopen(c)
        story.post(f"/v1/tasks/{c}/cancel", {"reason": "no"})
        expect(story.figures(), created=1, cancelled=1, completed=0, on_time_rate=None)
        story.reopen(c)
        story.done(c)
        expect(story.figures(), cancelled=0, completed=1, completed_late=1, on_time_rate=0.0)
