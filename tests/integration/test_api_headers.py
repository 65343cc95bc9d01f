"""What every API answer tells the browsers and caches that carry it: store nothing
(`Cache-Control: no-store`: answers hold personal data in plaintext, and a browser kept
them in its HTTP cache after the person signed out), sniff nothing, render nothing.
The console's static files keep their own headers (`services.console`), its 404s get these."""

from __future__ import annotations

from pathlib import Path

import pytest
from litestar.testing import TestClient

from services.api.response_headers import API_HEADERS, DOCS_HEADERS
from services.console import CONSOLE_HEADERS
from tests.integration.api_support import embedded_api

pytestmark = pytest.mark.integration


def test_every_api_answer_says_store_nothing(pg_url: str, tmp_path: Path) -> None:
    with embedded_api(tmp_path, database_url=pg_url) as api, TestClient(app=api.app) as client:
        admin = api.token("root", "sales", "admin")
        body = {"name": "Grace Hopper", "email": "grace@example.com", "phone": "+15551234567"}
        created = client.post("/v1/customers", json=body, headers=admin)
        customer = created.json()["id"]
        api.catch_up()
        answers = {
            "command": created,
            "customer": client.get(f"/v1/customers/{customer}", headers=admin),
            "history": client.get(f"/v1/customers/{customer}/history", headers=admin),
            "timeline": client.get(f"/v1/customers/{customer}/timeline", headers=admin),
            "department": client.get("/v1/departments/sales/customers", headers=admin),
            "search": client.get("/v1/customers?email=grace@example.com", headers=admin),
            "refused": client.get(f"/v1/customers/{customer}/history"),
            "invalid": client.post("/v1/customers", json={"name": ""}, headers=admin),
            "unknown": client.get("/v1/nothing-here", headers=admin),
            "health": client.get("/healthz"),
        }
        assert "grace@example.com" in answers["customer"].text
        for what, answer in answers.items():
            for name, value in API_HEADERS.items():
                assert answer.headers.get(name) == value, (what, answer.status_code, name)
        console = client.get("/console/")
        assert console.headers["cache-control"] == "no-cache"
        csp = console.headers["content-security-policy"]
        assert csp == CONSOLE_HEADERS["Content-Security-Policy"]
        missing = client.get("/console/no-such-file.js")
        assert missing.status_code == 404
        assert missing.headers["cache-control"] == "no-store"
        assert missing.headers["x-content-type-options"] == "nosniff"


def test_the_openapi_ui_is_never_framed_nor_sniffed(tmp_path: Path) -> None:
    """`/docs` (its inline script and CDN files need a policy of their own) was left
    without headers: the red team framed it on another origin, under its "Authorize"
    button and a token typed there."""
    with embedded_api(tmp_path) as api, TestClient(app=api.app) as client:
        for path in ("/docs", "/docs/oauth2-redirect.html", "/docs/openapi.json"):
            answer = client.get(path)
            assert answer.status_code == 200, path
            for name, value in DOCS_HEADERS.items():
                assert answer.headers.get(name) == value, (path, name)
        assert "frame-ancestors 'none'" in DOCS_HEADERS["Content-Security-Policy"]
