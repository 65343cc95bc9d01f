"""50 concurrent conflicting updates to one task with If-Match, on PostgreSQL:
exactly one wins per version, the rest get 409, and after retries nothing is lost."""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from litestar.testing import TestClient

from services.api import create_app
from services.bootstrap import Runtime, bootstrap
from services.settings import load_settings

WRITERS = 50


@pytest.fixture
def client(pg_url: str, tmp_path: Path) -> Iterator[TestClient[Any]]:
    runtime: Runtime = bootstrap(
        load_settings({"CRM_DATABASE_URL": pg_url, "CRM_DATA_DIR": str(tmp_path)})
    )
    with TestClient(app=create_app(runtime)) as test_client:
        yield test_client
    runtime.close()


def test_one_winner_per_version_and_nothing_lost(client: TestClient[Any]) -> None:
    token = client.app.state.services.principals.add("sam", "sales", "agent")
    auth = {"Authorization": f"Bearer {token}"}
    customer = client.post("/v1/customers", json={"name": "Ada"}, headers=auth).json()
    body = {"customer_id": customer["id"], "title": "start"}
    task_url = "/v1/tasks/" + client.post("/v1/tasks", json=body, headers=auth).json()["id"]

    def update(writer: int, version: int) -> int:
        headers = auth | {"If-Match": f'"{version}"'}
        response = client.patch(task_url, json={"title": f"title {writer}"}, headers=headers)
        if response.status_code == 409:
            assert response.json()["type"].endswith("/version-conflict")
        return response.status_code

    with ThreadPoolExecutor(WRITERS) as pool:
        statuses = list(pool.map(update, range(WRITERS), [1] * WRITERS))
    assert statuses.count(200) == 1
    assert statuses.count(409) == WRITERS - 1

    pending = [w for w, s in enumerate(statuses) if s == 409]
    while pending:
        version = int(client.get(task_url, headers=auth).headers["etag"].strip('"'))
        with ThreadPoolExecutor(len(pending)) as pool:
            results = list(pool.map(update, pending, [version] * len(pending)))
        assert results.count(200) == 1
        pending = [w for w, s in zip(pending, results, strict=True) if s != 200]

    auditor = client.app.state.services.principals.add("aud", "audit", "auditor")
    history = client.get(task_url + "/history", headers={"Authorization": f"Bearer {auditor}"})
    history = history.json()
    titles = {entry["data"]["title"] for entry in history[1:]}
    assert len(history) == WRITERS + 1
    assert titles == {f"title {w}" for w in range(WRITERS)}
