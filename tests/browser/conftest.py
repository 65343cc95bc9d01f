"""The `console` fixture of the console's test modules: a seeded scenario
(tests/browser/scenario.py) served by its own `crm run` per module, and one Chromium."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest
from playwright.sync_api import Browser

from tests.browser.harness import (
    Watched,
    call_api,
    chromium,
    crm_run,
    require_chromium,
    watched_page,
)
from tests.browser.scenario import Scenario, seed


@dataclass
class Console:
    base: str
    browser: Browser
    scenario: Scenario

    @contextmanager
    def page(self) -> Iterator[Watched]:
        with watched_page(self.browser, self.base) as watched:
            yield watched

    def api(self, who: str, path: str, **params: Any) -> Any:
        return call_api(self.base, self.scenario.token(who), "GET", f"{path}?{urlencode(params)}")

    def command(self, who: str, path: str, body: dict[str, Any]) -> Any:
        return call_api(self.base, self.scenario.token(who), "POST", path, body)


@contextmanager
def serve_console(data_dir: Path, settings: Mapping[str, str] | None = None) -> Iterator[Console]:
    """The seeded scenario in `data_dir`, served by `crm run` with `settings` (added to its
    environment), and one Chromium. The bootstrap admin's token is the scenario's "admin"."""
    scenario = seed(data_dir, datetime.now(UTC))
    with crm_run(data_dir, settings) as served, chromium() as browser:
        scenario.tokens["admin"] = served.admin_token()
        yield Console(served.base, browser, scenario)


@pytest.fixture(scope="module")
def console(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Console]:
    require_chromium()
    with serve_console(tmp_path_factory.mktemp("console")) as served:
        yield served
