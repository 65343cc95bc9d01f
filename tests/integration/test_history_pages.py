"""`GET …/history` answers a page at a time, on both stores: a customer's history has
no bound, and one answer holding all of it would hold it all in memory at once."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from litestar.testing import TestClient

from services.api.reads import HISTORY_PAGE
from tests.integration.api_support import EmbeddedApi, embedded_api

Client = TestClient[Any]


@pytest.fixture(params=["sqlite", "postgres"])
def api(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[EmbeddedApi]:
    url = request.getfixturevalue("pg_url") if request.param == "postgres" else None
    with embedded_api(tmp_path, database_url=url) as embedded:
        yield embedded


@pytest.fixture
def client(api: EmbeddedApi) -> Iterator[Client]:
    with TestClient(app=api.app) as test_client:
        yield test_client


def _pages(client: Client, url: str, headers: dict[str, str]) -> list[list[int]]:
    """The versions of each page, following `Link: <…>; rel="next"` from `url`."""
    pages: list[list[int]] = []
    next_url: str | None = url
    while next_url is not None:
        answer = client.get(next_url, headers=headers)
        assert answer.status_code == 200, answer.text
        pages.append([entry["version"] for entry in answer.json()])
        link = answer.headers.get("link")
        next_url = None
        if link is not None:
            found = re.fullmatch(r'<(/v1/[^>]+)>; rel="next"', link)
            assert found, link
            next_url = found.group(1)
    return pages


def test_history_pages_follow_their_links_to_every_event_once(
    client: Client, api: EmbeddedApi
) -> None:
    sales, auditor = api.token("sam", "sales", "agent"), api.token("ann", "audit", "auditor")
    customer = client.post("/v1/customers", json={"name": "Ada"}, headers=sales).json()["id"]
    for n in range(5):
        patched = client.patch(
            f"/v1/customers/{customer}", json={"name": f"Ada {n}"}, headers=sales
        )
        assert patched.status_code == 200, patched.text
    url = f"/v1/customers/{customer}/history"

    whole = client.get(url, headers=auditor)
    assert [entry["version"] for entry in whole.json()] == [1, 2, 3, 4, 5, 6]
    assert "link" not in whole.headers  # all of it fits the default page
    assert _pages(client, f"{url}?limit=4", auditor) == [[1, 2, 3, 4], [5, 6]]
    assert _pages(client, f"{url}?limit=3", auditor) == [[1, 2, 3], [4, 5, 6]]  # no empty page
    assert _pages(client, f"{url}?cursor=4&limit=1", auditor) == [[5], [6]]
    assert _pages(client, f"{url}?cursor=6", auditor) == [[]]
    paged = client.get(f"{url}?cursor=2&limit=2", headers=auditor).json()
    assert paged == whole.json()[2:4]  # the same entries, masking and metadata included


def test_history_page_parameters_out_of_range_are_400s(client: Client, api: EmbeddedApi) -> None:
    sales, auditor = api.token("sam", "sales", "agent"), api.token("ann", "audit", "auditor")
    customer = client.post("/v1/customers", json={"name": "Ada"}, headers=sales).json()["id"]
    url = f"/v1/customers/{customer}/history"
    hostile = ["limit=0", f"limit={HISTORY_PAGE + 1}", "cursor=-1", f"cursor={2**63}", "limit=x"]
    for query in hostile:
        answer = client.get(f"{url}?{query}", headers=auditor)
        assert answer.status_code == 400, (query, answer.text)
    assert client.get(f"{url}?limit={HISTORY_PAGE}", headers=auditor).status_code == 200


def test_every_history_route_declares_its_page_parameters(client: Client) -> None:
    """Declared, so `/docs` shows them and the hostile-parameter test tries them."""
    paths = client.get("/openapi.json").json()["paths"]
    histories = [path for path in paths if path.endswith("/history")]
    assert len(histories) == 3
    for path in histories:
        names = {parameter["name"] for parameter in paths[path]["get"]["parameters"]}
        assert {"cursor", "limit"} <= names, path
