"""A real headless Chromium driving the console of a real `crm run`.

Chromium is Debian's (`/usr/bin/chromium`, installed by `scripts/browser.sh`), driven by
Playwright's Python package through its executable path: nothing is downloaded at test
time. Playwright gives every browser a new empty profile directory. The flags are
those this machine's closed network needs (no background connections at all).

Every page records its console errors, uncaught exceptions and every request it makes,
so a test can say "no error, nothing fetched from another origin".
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
from playwright.sync_api import Browser, ConsoleMessage, Page, Request, Response, sync_playwright

from tests.e2e.processes import Processes, crm_processes, free_port, wait_for_http

CHROMIUM = Path("/usr/bin/chromium")
FLAGS = [
    "--headless",
    "--no-sandbox",  # tests run as root (CI too); the sandbox refuses root
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
ARTIFACTS = Path(__file__).resolve().parents[2] / "var" / "test-artifacts" / "console"
VIEWPORT = {"width": 1400, "height": 900}
REFUSED = re.compile(r"Failed to load resource: the server responded with a status of 40[134]\b")


def require_chromium() -> None:
    """Skip without Chromium locally; fail under CI, where `make test` installs it."""
    if CHROMIUM.exists():
        return
    message = f"{CHROMIUM} is missing: run `scripts/browser.sh` (apt-get install chromium)"
    if os.environ.get("CI"):
        pytest.fail(message)
    pytest.skip(message)


@contextmanager
def chromium() -> Iterator[Browser]:
    require_chromium()
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=FLAGS)
        try:
            yield browser
        finally:
            browser.close()


@dataclass
class Watched:
    """A page and what it did: console errors, uncaught errors, requests, refusals."""

    page: Page
    base: str
    errors: list[str] = field(default_factory=list)
    requests: list[str] = field(default_factory=list)
    refused: list[str] = field(default_factory=list)  # URLs answered 401/403/404

    def attach(self) -> None:
        self.page.on("console", self._console)
        self.page.on("pageerror", lambda error: self.errors.append(f"uncaught: {error}"))
        self.page.on("request", self._request)
        self.page.on("response", self._response)

    def _console(self, message: ConsoleMessage) -> None:
        if message.type == "error":
            self.errors.append(message.text)

    def _request(self, request: Request) -> None:
        self.requests.append(request.url)

    def _response(self, response: Response) -> None:
        if response.status in (401, 403, 404):
            self.refused.append(response.url)

    def foreign_requests(self) -> list[str]:
        origin = urlsplit(self.base)[:2]
        return [url for url in self.requests if urlsplit(url)[:2] != origin]

    def assert_clean(self, *, refusals_expected: bool = False) -> None:
        """No console error and no request to another origin. With `refusals_expected`,
        the browser's own "Failed to load resource: 401/403/404" lines for the API's refusals
        are allowed (one per refused response), nothing else."""
        errors = self.errors
        if refusals_expected:
            errors = [e for e in errors if not REFUSED.search(e)]
            assert len(self.errors) - len(errors) <= len(self.refused)
        assert errors == [], f"console errors: {errors}"
        assert self.foreign_requests() == [], (
            f"requests to other origins: {self.foreign_requests()}"
        )
        assert self.requests, "the page made no request at all"

    def screenshot(self, name: str, into: Path | None = None) -> Path:
        """A full-page PNG under var/test-artifacts/console (and in `into`, if given)."""
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        path = ARTIFACTS / f"{name}.png"
        self.page.screenshot(path=str(path), full_page=True)
        if into is not None:
            into.mkdir(parents=True, exist_ok=True)
            (into / path.name).write_bytes(path.read_bytes())
        return path


@contextmanager
def watched_page(browser: Browser, base: str) -> Iterator[Watched]:
    """A page in a new browser context (its own sessionStorage), watched from the start."""
    context = browser.new_context(viewport=VIEWPORT)  # type: ignore[arg-type]
    page = context.new_page()
    page.set_default_timeout(20_000)
    watched = Watched(page, base)
    watched.attach()
    try:
        yield watched
    finally:
        context.close()


def sign_in(watched: Watched, token: str, route: str = "") -> None:
    """Open the console at `route` (e.g. "#/board?department=support"), sign in through
    the form and wait until the page behind it shows."""
    page = watched.page
    page.goto(f"{watched.base}/console/{route}")
    page.fill("#token", token)
    page.click("#sign-in button[type=submit]")
    page.wait_for_selector("#bar:not([hidden])")


@dataclass
class Served:
    """A running `crm run`: its base URL and what it printed so far."""

    base: str
    processes: Processes

    def output(self) -> str:
        return self.processes.output(self.processes.running[0][1])

    def admin_token(self) -> str:
        """The bootstrap admin token `crm run` prints on its first start."""
        found = re.search(r"Bootstrap admin token \(shown once\): (\S+)", self.output())
        assert found, f"crm run printed no admin token:\n{self.output()}"
        return found.group(1)


@contextmanager
def crm_run(data_dir: Path, settings: Mapping[str, str] | None = None) -> Iterator[Served]:
    """`crm run` (the embedded default: API + projections in one process) on `data_dir`,
    with `settings` (e.g. CRM_DEPARTMENTS) added to its environment."""
    port = free_port()
    with crm_processes(embedded_env(data_dir) | dict(settings or {}), data_dir) as processes:
        process = processes.start("run", "--host", "127.0.0.1", "--port", str(port))
        base = f"http://127.0.0.1:{port}"
        wait_for_http(base, process)
        yield Served(base, processes)


def call_api(base: str, token: str, method: str, path: str, body: Any = None) -> Any:
    """One API call with a bearer token; its JSON answer (fails the test on an error)."""
    answer = httpx.request(
        method, f"{base}{path}", json=body, timeout=10, headers={"Authorization": f"Bearer {token}"}
    )
    answer.raise_for_status()
    return answer.json()


def embedded_env(data_dir: Path) -> dict[str, str]:
    """`crm` on the embedded default in `data_dir`, even where CRM_DATABASE_URL is set."""
    return {"CRM_DATA_DIR": str(data_dir), "CRM_DATABASE_URL": ""}
