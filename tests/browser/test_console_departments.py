"""The console offers the departments the deployment configures (`CRM_DEPARTMENTS`), read
from GET /v1/departments once per sign-in, not a list of its own.

It knew only sales, support and marketing: a deployment's `legal` could not be picked,
and the legal board said "Unknown department" without asking the API.
"""

from __future__ import annotations

from collections.abc import Iterator
from urllib.parse import urlsplit

import pytest
from playwright.sync_api import Page, Route, expect

from tests.browser.conftest import Console, serve_console
from tests.browser.harness import Watched, require_chromium, sign_in

pytestmark = pytest.mark.browser

CONFIGURED = ["sales", "support", "marketing", "legal"]


@pytest.fixture(scope="module")
def legal(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Console]:
    """The seeded scenario served with a fourth department, `legal`, which has one open
    conversation."""
    require_chromium()
    settings = {"CRM_DEPARTMENTS": ",".join(CONFIGURED)}
    with serve_console(tmp_path_factory.mktemp("departments"), settings) as console:
        client = console.command("admin", "/v1/customers", {
            "name": "Lex Client", "owner_department": "legal",
        })  # fmt: skip
        console.command("admin", "/v1/conversations", {
            "customer_id": client["id"], "channel": "email", "subject": "Contract review",
            "department": "legal", "agent": "lena",
        })  # fmt: skip
        yield console


def options(page: Page, select: str) -> list[str]:
    return page.eval_on_selector_all(  # type: ignore[no-any-return]
        f"{select} option", "options => options.map(o => o.value)"
    )


def department_reads(watched: Watched) -> int:
    return [urlsplit(url).path for url in watched.requests].count("/v1/departments")


def test_the_configured_departments_are_offered_and_the_legal_board_opens(
    legal: Console,
) -> None:
    assert legal.api("admin", "/v1/departments") == {"departments": CONFIGURED}
    with legal.page() as watched:
        page = watched.page
        sign_in(watched, legal.scenario.token("admin"), "#/board?department=sales")
        expect(page.locator("#live-state")).to_have_class("live-state is-live")
        assert options(page, "#department") == CONFIGURED

        page.select_option("#department", "legal")
        expect(page).to_have_url(f"{legal.base}/console/#/board?department=legal")
        expect(page.locator("#live-state")).to_have_class("live-state is-live")
        expect(page.locator("#queue li[data-id]")).to_have_count(1)
        expect(page.locator("#queue")).to_contain_text("Contract review")
        expect(page.locator("main")).not_to_contain_text("Unknown department")

        page.goto(f"{legal.base}/console/#/satisfaction")
        page.wait_for_selector("#page-satisfaction[data-state=ready]")
        assert options(page, "#department") == ["", *CONFIGURED]
        rows = page.locator("#department-table tbody tr")
        expect(rows).to_have_count(len(CONFIGURED))
        page.goto(f"{legal.base}/console/#/customer")
        expect(page.locator("#customer-list")).to_contain_text("Ada King")
        assert options(page, "#department") == CONFIGURED
        assert department_reads(watched) == 1, "read once per sign-in"

        page.click("#sign-out")
        sign_in(watched, legal.scenario.token("admin"), "#/board?department=legal")
        expect(page.locator("#queue")).to_contain_text("Contract review")
        assert department_reads(watched) == 2, "read again on the next sign-in"
        watched.assert_clean()


def test_an_unconfigured_department_is_unknown_and_not_requested(legal: Console) -> None:
    with legal.page() as watched:
        page = watched.page
        sign_in(watched, legal.scenario.token("sam"), "#/board?department=nope")
        unknown = page.locator("#page-board[data-state=unknown-department]")
        expect(unknown).to_contain_text('Unknown department: "nope".')
        expect(unknown.locator("a")).to_have_text(CONFIGURED)
        paths = [urlsplit(url).path for url in watched.requests]
        assert [path for path in paths if "nope" in path] == []
        assert [path for path in paths if path.startswith("/v1")] == [
            "/v1/events/stream",  # the sign-in's
            "/v1/departments",
        ]
        watched.assert_clean()


def test_a_failed_read_of_the_departments_says_so_and_offers_none(legal: Console) -> None:
    """No built-in list stands in for the deployment's; the next page asks again."""

    def unavailable(route: Route) -> None:
        route.fulfill(status=503, content_type="application/problem+json",
                      body='{"title": "Service Unavailable", "status": 503}')  # fmt: skip

    with legal.page() as watched:
        page = watched.page
        page.route("**/v1/departments", unavailable)
        sign_in(watched, legal.scenario.token("sam"), "#/board?department=sales")
        failed = page.locator("#page-board[data-state=error]")
        expect(failed.locator(".notice.error")).to_have_text(
            "Could not load the departments: Service Unavailable"
        )
        expect(page.locator("#department")).to_have_count(0)
        paths = [urlsplit(url).path for url in watched.requests]
        assert [path for path in paths if path.startswith("/v1/departments/")] == []

        page.unroute("**/v1/departments")
        page.goto(f"{legal.base}/console/#/customer?department=sales")
        expect(page.locator("#customer-list li")).not_to_have_count(0)
        assert options(page, "#department") == CONFIGURED
        assert department_reads(watched) == 2
        assert len(watched.errors) == 1, watched.errors
        assert "status of 503" in watched.errors[0]
