"""`crm api` (PostgreSQL) serves the console like `crm run` does (tests/browser drives
that one in Chromium): the page, its modules and the vendored chart library, each under
the console's Content-Security-Policy, and the URL is announced at start."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from services.console import CONSOLE_HEADERS
from tests.e2e.processes import crm_processes, eventually, free_port, wait_for_http

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
        announced = f"Console: http://127.0.0.1:{port}/console/"
        eventually(lambda: announced in crm.output(api) or None, within=10, what="the URL")
