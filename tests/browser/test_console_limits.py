"""What the console does at the edges of what it is given: lists longer than it loads at
once, and addresses (the location hash) it has no page or no resource for.

Found by a security review: a timeline or a queue that stopped after a bound without a
word hid the newest entries; ids and departments from the address, percent-encoded
but left as "." or "..", changed which API path was requested; `#/constructor` found a
property of Object.prototype where a page was looked up and left the console blank.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit
from uuid import uuid4

import pytest
from playwright.sync_api import Page, expect

from tests.browser.conftest import Console
from tests.browser.harness import ARTIFACTS, Watched, sign_in

pytestmark = pytest.mark.browser

TIMELINE_PAGES = 20  # what the console loaded of a timeline, then stopped without a word
MESSAGE = ("flood " * 11_000)[:65_536]  # the longest message a conversation takes
MESSAGES_PER_CONVERSATION = 40  # under the text one conversation holds (4 MB)


def customer(console: Console, who: str, name: str) -> str:
    registered = console.command(who, "/v1/customers", {"name": name})
    return str(registered["id"])


def whole_list(console: Console, who: str, path: str, **params: Any) -> tuple[list[Any], int]:
    """Every item of an API list, following `next_cursor`, and how many pages it took."""
    items: list[Any] = []
    cursor, pages = None, 0
    while True:
        query = params | ({"cursor": cursor} if cursor else {})
        answer = console.api(who, path, **query)
        items += answer["items"]
        pages += 1
        cursor = answer["next_cursor"]
        if not cursor:
            return items, pages


def load_all(page: Page, more: str) -> None:
    """Click the list's "load more" until it says no more exist."""
    line = page.locator(more)
    for _ in range(20):
        if not line.is_visible():
            return
        line.locator("button").click()
        expect(line.locator("button")).to_be_enabled()  # the load finished
    raise AssertionError(f"{more} still offers more after 20 loads")


# --- lists longer than one load ------------------------------------------------------------


def test_a_flooded_timeline_says_newer_entries_exist_and_loads_them(console: Console) -> None:
    """An agent's flood of large messages pushed a newer task out of the 360 view."""
    flooded = customer(console, "sam", "Flooded Customer")
    for _ in range(7):
        opened = console.command("sam", "/v1/conversations", {
            "customer_id": flooded, "channel": "email", "subject": "Flood",
        })  # fmt: skip
        for _ in range(MESSAGES_PER_CONVERSATION):
            console.command("sam", f"/v1/conversations/{opened['id']}/messages", {
                "direction": "inbound", "author": "flooder", "content": MESSAGE,
            })  # fmt: skip
    newest = console.command("sam", "/v1/tasks", {"customer_id": flooded, "title": "Newest task"})
    entries, pages = whole_list(
        console, "sam", f"/v1/customers/{flooded}/timeline", limit=500,
        min_position=newest["position"],
    )  # fmt: skip
    assert pages > TIMELINE_PAGES, "the flood must be longer than the console's old bound"
    assert entries[-1]["aggregate_id"] == newest["id"]

    with console.page() as watched:
        page = watched.page
        sign_in(watched, console.scenario.token("sam"), f"#/customer/{flooded}")
        page.wait_for_selector("#page-customer[data-state=ready]")
        more = page.locator("#timeline-more")
        expect(more).to_be_visible()
        expect(more).to_contain_text("not shown")
        shown = page.locator("#timeline li.entry").count()
        assert 0 < shown < len(entries)
        expect(page.locator("#timeline-title")).to_contain_text(f"({shown}+, newer entries not")
        assert page.locator(f'#timeline li[data-id="{newest["id"]}"]').count() == 0
        more.scroll_into_view_if_needed()
        page.screenshot(path=str(ARTIFACTS / "timeline-more-not-shown.png"))  # not full: long

        load_all(page, "#timeline-more")
        expect(page.locator("#timeline li.entry")).to_have_count(len(entries))
        expect(page.locator("#timeline-title")).to_have_text(
            f"Timeline across departments ({len(entries)})"
        )
        expect(page.locator(f'#timeline li[data-id="{newest["id"]}"]')).to_contain_text(
            "TaskCreated"
        )
        watched.assert_clean()


def test_the_board_queue_says_more_are_open_and_loads_them(console: Console) -> None:
    """The title said "Open conversations (200)" while the API listed more."""
    waiting = customer(console, "sam", "Waiting Customer")
    for number in range(201):
        opened = console.command("sam", "/v1/conversations", {
            "customer_id": waiting, "channel": "chat", "subject": f"Question {number}",
        })  # fmt: skip
    items, _ = whole_list(
        console, "sam", "/v1/departments/sales/conversations", limit=200,
        min_position=opened["position"],
    )  # fmt: skip
    assert len(items) > 200

    with console.page() as watched:
        page = watched.page
        sign_in(watched, console.scenario.token("sam"), "#/board?department=sales")
        expect(page.locator("#live-state")).to_have_class("live-state is-live")
        queue = page.locator("#queue li[data-id]")
        expect(queue).to_have_count(200)
        expect(page.locator("#queue-title")).to_contain_text("Open conversations (200+)")
        expect(page.locator("#queue-more")).to_contain_text("not shown")
        watched.screenshot("board-more-not-shown")

        load_all(page, "#queue-more")
        expect(queue).to_have_count(len(items))
        expect(page.locator("#queue-title")).to_contain_text(f"Open conversations ({len(items)})")
        shown = page.eval_on_selector_all("#queue li[data-id]", "li => li.map(i => i.dataset.id)")
        assert shown == [item["conversation_id"] for item in items]
        watched.assert_clean()


# --- what the address may hold ----------------------------------------------------------


def api_paths(watched: Watched) -> list[str]:
    """The paths of the API requests the page made (as the browser sent them)."""
    paths = [urlsplit(url).path for url in watched.requests]
    return [path for path in paths if path.startswith("/v1")]


def show(page: Page, route: str) -> None:
    """Go to `route` as a person following a link would, from an emptied page."""
    page.evaluate("route => { document.getElementById('main').replaceChildren();"
                  " location.hash = route; }", route)  # fmt: skip


DOT_IDS = ["..", ".", "%2e%2e", "%2E", ".%2e", "not-a-uuid"]
DOT_DEPARTMENTS = ["..", ".", "%2e%2e", "%2E.", "nowhere"]


def test_dot_segments_in_the_address_request_no_other_api_path(console: Console) -> None:
    with console.page() as watched:
        page = watched.page
        sign_in(watched, console.scenario.token("sam"), "#/customer/x")
        for segment in DOT_IDS:
            show(page, f"#/customer/{segment}")
            expect(page.locator("#page-customer[data-state=not-found]")).to_contain_text(
                "No customer has this id"
            )
        for department in DOT_DEPARTMENTS:
            for route in (f"#/board?department={department}",
                          f"#/customer?department={department}"):  # fmt: skip
                show(page, route)
                expect(page.locator("main .page[data-state=unknown-department]")).to_contain_text(
                    "Unknown department"
                )
        # the sign-in's and the deployment's departments (read once), nothing else
        assert api_paths(watched) == ["/v1/events/stream", "/v1/departments"]
        assert page.evaluate("sessionStorage.getItem('crm.console.board')") is None

        refused = page.evaluate(
            """async (segments) => {
                 const { path } = await import("/console/js/api.js");
                 const out = {};
                 for (const s of segments) {
                   try { out[s] = String(path`/v1/customers/${s}/timeline`); }
                   catch (error) { out[s] = error.name; }
                 }
                 return out;
               }""",
            [*DOT_IDS, "", "a/b", str(uuid4())],
        )
        assert [refused[s] for s in DOT_IDS[:-1]] == ["RangeError"] * (len(DOT_IDS) - 1)
        assert refused[""] == "RangeError"
        assert refused["a/b"] == "/v1/customers/a%2Fb/timeline"  # one segment, encoded

        show(page, f"#/customer/{console.scenario.masked_customer}")  # a real id still opens
        page.wait_for_selector("#page-customer[data-state=ready]")
        watched.assert_clean()


@pytest.mark.parametrize("name", ["constructor", "__proto__", "toString", "hasOwnProperty"])
def test_a_prototype_name_in_the_address_is_an_unknown_page(console: Console, name: str) -> None:
    with console.page() as watched:
        page = watched.page
        sign_in(watched, console.scenario.token("ana"), f"#/{name}")
        page.wait_for_selector("#page-satisfaction[data-state=ready]", timeout=5_000)
        show(page, f"#/{name}/x")
        page.wait_for_selector("#page-satisfaction[data-state=ready]", timeout=5_000)
        expect(page.locator("#nav a.current")).to_have_text("Satisfaction")
        watched.assert_clean()
