"""`crm api` (PostgreSQL) serves the console like `crm run` does (tests/browser drives
that one in Chromium): the page, its modules and the vendored chart library, each under
the console's Content-Security-Policy, revalidated with a 304, and the URL is announced
at start."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
from litestar.testing import TestClient

from services.console import CONSOLE_HEADERS
from tests.e2e.processes import crm_processes, eventually, free_port, wait_for_http
from tests.integration.api_support import embedded_api

pytestmark = pytest.mark.integration


def test_crm_api_serves_the_console_under_its_csp(pg_url: str, tmp_path: Path) -> None:
    port = free_port()
    env = {"CRM_DATABASE_URL": pg_url, "CRM_DATA_DIR": str(tmp_path / "data")}
    with crm_processes(env, tmp_path) as crm:
        api = crm.start("api", "--port", str(port))
        base = f"http://127.0.0.1:{port}"
        wait_for_http(base, api)
        for path in ("/console/", "/console/js/main.js", "/console/vendor/uplot/uPlot.esm.js"):
            answer = httpx.get(f"{base}{path}", timeout=10)
            assert answer.status_code == 200, path
            csp = answer.headers["content-security-policy"]
            assert csp == CONSOLE_HEADERS["Content-Security-Policy"]
        assert 'src="/console/js/main.js"' in httpx.get(f"{base}/console/", timeout=10).text
        with httpx.Client(base_url=base, timeout=10) as client:  # one connection, kept
            etag = client.get("/console/js/main.js").headers["etag"]
            for _ in range(2):  # a 304 leaves the connection fit for the next request
                again = client.get("/console/js/main.js", headers={"If-None-Match": etag})
                assert (again.status_code, again.content) == (304, b"")
                assert "transfer-encoding" not in again.headers
            assert client.get("/console/js/main.js").status_code == 200
        announced = f"Console: http://127.0.0.1:{port}/console/"
        eventually(lambda: announced in crm.output(api) or None, within=10, what="the URL")


ODD_CONSOLE_PATHS = (
    "/console/%00",  # a NUL: os.stat raised ValueError
    "/console/js/main%00.js",
    "/console/" + "a" * 5000,  # longer than a file name may be (ENAMETOOLONG)
    "/console/" + "a/" * 3000,  # longer than a path may be
    "/console/index.html/x",  # a file taken for a directory (ENOTDIR)
    "/console/js/main.js/../../index.html/x",
    "/console/%2e%2e/__init__.py",  # outside the static directory
    "/console/..%2f__init__.py",
)


def test_odd_paths_under_the_console_are_404s(pg_url: str, tmp_path: Path) -> None:
    """A path the console has no file for is a 404 problem, whatever its bytes: each of
    these was a 500 (the file system's error escaped the static files route)."""
    with embedded_api(tmp_path, database_url=pg_url) as api, TestClient(app=api.app) as client:
        for path in ODD_CONSOLE_PATHS:
            answer = client.get(path)
            assert answer.status_code == 404, (path[:60], answer.text[:200])
            assert answer.headers["content-type"].startswith("application/problem+json")
        assert client.get("/console/js/main.js").status_code == 200
