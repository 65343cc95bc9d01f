"""Every console page on the demo data (`crm demo`), in Chromium, with a screenshot each.

The demo closes all its conversations and tasks, so while the board is open the test
sends a few open ones through the API (as a support desk would): the board shows them
live. Screenshots
land in var/test-artifacts/console; with CRM_CONSOLE_SCREENSHOTS=<dir> (what
`scripts/console-screenshots.sh` sets) also in that directory: the README's images
are made this way, from docs/console.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Browser, expect

from tests.browser.harness import (
    Watched,
    call_api,
    chromium,
    crm_run,
    embedded_env,
    require_chromium,
    sign_in,
    watched_page,
)
from tests.e2e.processes import crm_processes

pytestmark = pytest.mark.browser

DEMO_CUSTOMERS = 40
SHOTS = os.environ.get("CRM_CONSOLE_SCREENSHOTS")


@dataclass
class Demo:
    base: str
    browser: Browser
    token: str

    def call(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        return call_api(self.base, self.token, method, path, body)


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Demo]:
    require_chromium()
    data_dir: Path = tmp_path_factory.mktemp("demo")
    with crm_processes(embedded_env(data_dir), data_dir) as processes:
        processes.run("demo", "--customers", str(DEMO_CUSTOMERS))
    with crm_run(data_dir) as served, chromium() as browser:
        yield Demo(served.base, browser, served.admin_token())


def shoot(watched: Watched, name: str) -> None:
    watched.screenshot(name, Path(SHOTS) if SHOTS else None)


def open_support_work(demo: Demo) -> dict[str, Any]:
    """A queue and a task board for support on top of the demo's closed stories."""
    customers = demo.call("GET", "/v1/departments/support/customers?limit=10")["items"]
    for customer, subject in zip(customers, ("Delivery is late", "Cannot sign in",
                                             "Refund request"), strict=False):  # fmt: skip
        demo.call("POST", "/v1/conversations", {
            "customer_id": customer["customer_id"], "channel": "chat", "subject": subject,
            "department": "support", "agent": "sven",
        })  # fmt: skip
    now = datetime.now(UTC)
    for customer, (title, due) in zip(customers, (
        ("Call back about the invoice", now - timedelta(days=1)),
        ("Prepare a renewal offer", now + timedelta(days=3)),
    ), strict=False):  # fmt: skip
        demo.call("POST", "/v1/tasks", {
            "customer_id": customer["customer_id"], "title": title, "department": "support",
            "assignee": "sven", "due_at": due.isoformat(), "priority": "high",
        })  # fmt: skip
    return customers[0]  # type: ignore[no-any-return]


def a_customer_with_a_story(demo: Demo) -> str:
    """A demo customer with orders and a timeline (most have both)."""
    customers = demo.call("GET", "/v1/departments/sales/customers?limit=100")["items"]
    for customer in customers:
        if customer["order_count"] > 0:
            cid = customer["customer_id"]
            if len(demo.call("GET", f"/v1/customers/{cid}/timeline")["items"]) > 4:
                return str(cid)
    raise AssertionError("the demo has no customer with orders and a conversation")


def test_every_page_renders_the_demo_and_is_photographed(demo: Demo) -> None:
    story = a_customer_with_a_story(demo)
    with watched_page(demo.browser, demo.base) as watched:
        page = watched.page
        sign_in(watched, demo.token, "#/satisfaction")
        page.wait_for_selector("#page-satisfaction[data-state=ready]")
        assert page.locator("#satisfaction-table tbody tr").count() >= 1
        shoot(watched, "satisfaction")

        page.goto(f"{demo.base}/console/#/board?department=support")
        expect(page.locator("#live-state")).to_have_class("live-state is-live")
        open_support_work(demo)  # arrives while the board is open: the live feed shows it
        expect(page.locator("#queue li.waiting")).to_have_count(3)
        expect(page.locator("#feed li")).to_have_count(5)
        expect(page.locator("#tasks li.overdue")).to_have_count(1)
        shoot(watched, "board")

        page.goto(f"{demo.base}/console/#/customer/{story}")
        page.wait_for_selector("#page-customer[data-state=ready]")
        page.click("#open-as-of")
        page.wait_for_selector("#as-of")
        assert page.locator("#orders tbody tr").count() >= 1
        shoot(watched, "customer-360")

        page.goto(f"{demo.base}/console/#/pipeline")
        page.wait_for_selector("#page-pipeline[data-state=ready]")
        expect(page.locator("#ready-status")).to_have_text("ready")
        shoot(watched, "pipeline")
        watched.assert_clean()
