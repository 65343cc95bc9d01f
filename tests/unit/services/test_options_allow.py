"""`OPTIONS` on every path of the app answers the same `Allow` as its 405 (red team s32
F4: `/v1/customers` answered `GET, OPTIONS`, missing `POST`, and `/v1/customers/{id}`
`OPTIONS, PATCH`; Litestar 2's automatic handler kept the first handler's methods,
`services.api.options_allow`)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from litestar.routes import HTTPRoute
from litestar.testing import TestClient

from services.api import create_app
from services.bootstrap import bootstrap
from services.settings import load_settings

ID = "2a9b2c3d-0000-4000-8000-00000000000f"
SAMPLES = {"uuid": ID, "str": "x", "path": "app.js"}
"""A value of each path parameter's type."""
UNUSED = ("PUT", "DELETE", "PATCH", "POST", "GET")
"""Methods one of which a path does not take: its 405."""


@pytest.fixture
def client(tmp_path: Path) -> Iterator[TestClient[Any]]:
    runtime = bootstrap(load_settings({"CRM_DATA_DIR": str(tmp_path), "CRM_DATABASE_URL": ""}))
    try:
        with TestClient(app=create_app(runtime)) as test_client:
            yield test_client
    finally:
        runtime.close()


def _sent_path(route: HTTPRoute) -> str:
    path = route.path_format  # `{name}` for each parameter
    for name, parameter in route.path_parameters.items():
        path = path.replace(f"{{{name}}}", SAMPLES[parameter.type.__name__.lower()])
    return path


def _allowed(header: str) -> set[str]:
    return {method.strip() for method in header.split(",")}


def test_options_allows_what_the_405_allows_on_every_path(client: TestClient[Any]) -> None:
    routes = [r for r in client.app.routes if isinstance(r, HTTPRoute)]
    several = [r for r in routes if len(set(r.methods) - {"OPTIONS", "HEAD"}) > 1]
    assert any(r.path == "/v1/customers" for r in several)  # what F4 named
    for route in routes:
        path = _sent_path(route)
        options = client.options(path)
        assert options.status_code == 204, path
        unused = next(m for m in UNUSED if m not in route.methods)
        refused = client.request(unused, path)
        assert refused.status_code == 405, (path, unused)
        assert _allowed(options.headers["allow"]) == _allowed(refused.headers["allow"]), path
        assert _allowed(options.headers["allow"]) == set(route.methods), path


def test_customers_named_by_f4(client: TestClient[Any]) -> None:
    assert client.options("/v1/customers").headers["allow"] == "GET, OPTIONS, POST"
    allow = client.options(f"/v1/customers/{ID}").headers["allow"]
    assert allow == "DELETE, GET, OPTIONS, PATCH"
