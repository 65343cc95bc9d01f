"""The console in a real headless Chromium against `crm run`, on a seeded scenario
with known figures (tests/browser/scenario.py).

Each test signs in through the form with a principal's token and asserts what a person
would see, plus: no console error and no request to another origin. Waits are bounded
waits for an observable change (generous, so CI is not flaky), never timing assertions.
"""

from __future__ import annotations

import time
from typing import Any

import httpx
import pytest
from playwright.sync_api import Page, expect

from tests.browser.conftest import Console
from tests.browser.harness import sign_in

pytestmark = pytest.mark.browser


# --- satisfaction ----------------------------------------------------------------------

EXPECTED = {  # granularity -> period -> (CSAT answers, CSAT %, NPS answers, NPS), support
    "day": {
        "2025-03-03": (3, 200 / 3, 3, 100 / 3),
        "2025-03-05": (2, 100.0, 2, -50.0),
        "2025-04-08": (1, 0.0, 1, -100.0),
    },
    "week": {"2025-W10": (5, 80.0, 5, 0.0), "2025-W15": (1, 0.0, 1, -100.0)},
    "month": {"2025-03": (5, 80.0, 5, 0.0), "2025-04": (1, 0.0, 1, -100.0)},
}


def table_rows(page: Page) -> dict[str, dict[str, str]]:
    return page.eval_on_selector_all(  # type: ignore[no-any-return]
        "#satisfaction-table tbody tr",
        """rows => Object.fromEntries(rows.map(row => [row.dataset.period, Object.fromEntries(
             [...row.cells].map(cell => [cell.dataset.column, cell.textContent]))]))""",
    )


def chart(page: Page, selector: str) -> dict[str, Any]:
    return page.eval_on_selector(  # type: ignore[no-any-return]
        selector, "c => ({labels: c.labels, data: c.uplot.data.map(s => Array.from(s))})"
    )


def check_period_figures(page: Page, api: dict[str, Any], granularity: str) -> None:
    """The table and both charts show the API's figures, which are the scenario's."""
    expected = EXPECTED[granularity]
    periods = {p["bucket"]: p for p in api["periods"]}
    assert list(periods) == list(expected)
    for bucket, (csat_answers, csat, nps_answers, nps) in expected.items():
        given = periods[bucket]
        assert (given["csat_answers"], given["nps_answers"]) == (csat_answers, nps_answers)
        assert given["csat"] == pytest.approx(csat, abs=0.005)
        assert given["nps"] == pytest.approx(nps, abs=0.005)
    rows = table_rows(page)
    assert list(rows) == list(expected)
    for bucket, row in rows.items():
        assert int(row["csat_answers"]) == periods[bucket]["csat_answers"]
        assert int(row["nps_answers"]) == periods[bucket]["nps_answers"]
        assert float(row["csat"]) == periods[bucket]["csat"]
        assert float(row["nps"]) == periods[bucket]["nps"]
    trend = chart(page, "#satisfaction-chart")
    assert trend["labels"] == list(expected)
    assert trend["data"][1] == [periods[b]["csat"] for b in expected]
    assert trend["data"][2] == [periods[b]["nps"] for b in expected]
    counts = chart(page, "#answers-chart")
    assert counts["data"][1] == [periods[b]["csat_answers"] for b in expected]


def wait_ready(page: Page, name: str) -> None:
    page.wait_for_selector(f"#page-{name}[data-state=ready]")


def test_sign_in_and_the_satisfaction_charts_show_the_expected_figures(console: Console) -> None:
    with console.page() as watched:
        page = watched.page
        page.goto(f"{console.base}/console/")
        page.fill("#token", "not-a-token")
        page.click("#sign-in button[type=submit]")
        expect(page.locator("#sign-in-message")).to_contain_text("unknown or revoked")
        assert page.evaluate("sessionStorage.length") == 0

        sign_in(watched, console.scenario.token("ana"), "#/satisfaction?department=support")
        assert page.evaluate("Object.values(sessionStorage)") == [console.scenario.token("ana")]
        wait_ready(page, "satisfaction")
        api = console.api("ana", "/v1/stats/satisfaction", department="support", granularity="day")
        check_period_figures(page, api, "day")
        assert float(page.inner_text("#total-csat")) == pytest.approx(400 / 6, abs=0.005)
        assert float(page.inner_text("#total-nps")) == pytest.approx(-100 / 6, abs=0.005)
        departments = page.eval_on_selector_all(
            "#department-table tbody tr", "rows => rows.map(r => r.innerText.split('\\t'))"
        )
        assert [row[:3] for row in departments] == [
            ["sales", "0", "1"], ["support", "66.67", "6"], ["marketing", "—", "0"]
        ]  # fmt: skip
        watched.screenshot("satisfaction-day")

        for granularity in ("week", "month"):
            page.select_option("#granularity", granularity)
            expect(page.locator("#satisfaction-table tbody tr").first).to_have_attribute(
                "data-period", next(iter(EXPECTED[granularity]))
            )
            wait_ready(page, "satisfaction")
            api = console.api(
                "ana", "/v1/stats/satisfaction", department="support", granularity=granularity
            )
            check_period_figures(page, api, granularity)
        watched.assert_clean(refusals_expected=True)  # the wrong token's 401


# --- department board -------------------------------------------------------------------


def test_the_board_shows_the_queue_and_overdue_tasks_and_follows_commands_live(
    console: Console,
) -> None:
    scenario = console.scenario
    with console.page() as watched:
        page = watched.page
        sign_in(watched, scenario.token("sue"), "#/board?department=support")
        expect(page.locator("#live-state")).to_have_class("live-state is-live")
        expect(page.locator("#queue li .subject")).to_have_text(scenario.queue)
        overdue = page.locator(f'#tasks li[data-id="{scenario.overdue_task}"]')
        expect(overdue).to_have_class("task overdue")
        expect(overdue.locator(".badge")).to_have_text("overdue")
        assert (
            overdue.locator("xpath=ancestor::div[@data-status]").get_attribute("data-status")
            == "in_progress"
        )
        expect(page.locator(f'#tasks li[data-id="{scenario.future_task}"]')).to_have_class("task")

        sent = time.monotonic()
        opened = console.command("sue", "/v1/conversations", {
            "customer_id": str(scenario.masked_customer), "channel": "phone",
            "subject": "Printer on fire",
        })  # fmt: skip
        item = page.locator(f'#queue li[data-id="{opened["id"]}"]')
        expect(item).to_be_visible(timeout=15_000)
        print(
            f"board showed the new conversation {time.monotonic() - sent:.2f} s after the command"
        )
        expect(item.locator(".subject")).to_have_text("Printer on fire")
        expect(page.locator(f'#feed li[data-position="{opened["position"]}"]')).to_contain_text(
            "ConversationOpened"
        )  # it came through the event stream (the board does not poll)

        console.command("sue", f"/v1/tasks/{scenario.overdue_task}/complete", {"resolution": "ok"})
        done = page.locator(f'#tasks [data-status=done] li[data-id="{scenario.overdue_task}"]')
        expect(done).to_have_class("task", timeout=15_000)
        watched.screenshot("board-live")
        watched.assert_clean()


# --- customer 360 ------------------------------------------------------------------------


def profile(page: Page) -> dict[str, str]:
    return page.eval_on_selector_all(  # type: ignore[no-any-return]
        "#profile dd", "dds => Object.fromEntries(dds.map(d => [d.dataset.field, d.innerText]))"
    )


def test_an_analyst_sees_no_personal_data_and_no_time_slider(console: Console) -> None:
    with console.page() as watched:
        page = watched.page
        sign_in(
            watched, console.scenario.token("ana"), f"#/customer/{console.scenario.masked_customer}"
        )
        wait_ready(page, "customer")
        expect(page.locator("#customer-name")).to_have_text("[masked]")  # no personal data
        shown = profile(page)
        assert (shown["email"], shown["phone"]) == ("[masked]", "[masked]")
        assert shown["company"] == "ACME"
        assert page.locator("#profile .masked").count() >= 2
        assert "grace@example.com" not in page.content()
        assert "Grace" not in page.content()
        assert page.locator("#timeline li.entry").count() > 0
        watched.assert_clean()  # nothing refused so far
        watched.screenshot("customer-analyst")

        page.click("#open-as-of")  # analysts may not read past states
        expect(page.locator("#page-customer")).to_contain_text("may not see past states")
        assert page.locator("#as-of").count() == 0
        watched.assert_clean(refusals_expected=True)  # /history answered 403


def test_a_sales_agent_sees_nothing_of_a_support_only_customer(console: Console) -> None:
    scenario = console.scenario
    with console.page() as watched:
        page = watched.page
        sign_in(watched, scenario.token("sam"), f"#/customer/{scenario.support_only}")
        page.wait_for_selector("#page-customer[data-state=not-visible]")
        expect(page.locator("main")).to_contain_text("No customer with this id is visible to you")
        text = page.inner_text("main")
        for secret in ("Linus", "Torvalds", "linus@example.com", "+442071234567", "ACME"):
            assert secret not in text
        assert page.locator("#profile, #timeline, #orders, #as-of").count() == 0
        assert any(str(scenario.support_only) in url for url in watched.refused)

        page.goto(f"{console.base}/console/#/customer?department=sales")
        names = page.locator("#customer-list li a")
        expect(names.first).to_be_visible()
        assert "Linus Torvalds" not in names.all_inner_texts()
        assert "Grace Hopper" in names.all_inner_texts()
        watched.assert_clean(refusals_expected=True)


def test_an_auditor_slides_back_to_the_name_before_the_rename(console: Console) -> None:
    with console.page() as watched:
        page = watched.page
        sign_in(watched, console.scenario.token("aud"), f"#/customer/{console.scenario.renamed}")
        wait_ready(page, "customer")
        name = page.locator("#customer-name")
        expect(name).to_have_text("Ada King")
        page.click("#open-as-of")
        expect(page.locator("#as-of-label")).to_contain_text("Now: version 3 of 3")

        page.focus("#as-of")
        page.keyboard.press("Home")
        expect(name).to_have_text("Ada Lovelace")
        expect(page.locator("#as-of-label")).to_contain_text("version 1 of 3, 2025-03-02")
        expect(page.locator("#as-of-banner")).to_contain_text("as of 2025-03-02 10:00:00 UTC")
        watched.screenshot("customer-auditor-as-of")

        page.keyboard.press("End")
        expect(name).to_have_text("Ada King")
        expect(page.locator("#as-of-banner")).to_be_empty()
        watched.assert_clean()


# --- pipeline health ----------------------------------------------------------------------


def metric(text: str, name: str, projection: str | None = None) -> float:
    label = "" if projection is None else f'{{projection="{projection}"}}'
    line = next(line for line in text.splitlines() if line.startswith(f"{name}{label} "))
    return float(line.split()[-1])


def test_pipeline_health_shows_readiness_lag_and_dead_letters(console: Console) -> None:
    with console.page() as watched:
        page = watched.page
        sign_in(watched, console.scenario.token("ana"), "#/pipeline")
        wait_ready(page, "pipeline")
        expect(page.locator("#ready-status")).to_have_text("ready")
        expect(page.locator("#readiness [data-check=event_store] td")).to_have_text("ok")
        expect(page.locator("#page-pipeline")).to_contain_text("No relay in this process")
        metrics = httpx.get(f"{console.base}/metrics", timeout=10).text
        head = metric(metrics, "crm_event_store_head_position")
        expect(page.locator("#head")).to_have_text(f"{head:g}", timeout=15_000)
        for projection in ("sales", "support", "marketing", "shared", "stats"):
            row = page.locator(f'#projections tr[data-projection="{projection}"]')
            expect(row.locator("[data-column=events]")).to_have_text(
                f"{metric(metrics, 'crm_projection_events', projection):g}", timeout=15_000
            )
            expect(row.locator("[data-column=dead_letters]")).to_have_text("0")
            expect(row.locator("[data-column=rejected]")).to_have_text("0")
            expect(row.locator("[data-column=lag]")).to_have_text("0")
        assert page.eval_on_selector("#lag-chart", "c => c.uplot.series.length") == 6
        watched.assert_clean()


# --- the Content-Security-Policy, enforced by the browser --------------------------------


def test_the_browser_enforces_the_console_csp(console: Console) -> None:
    with console.page() as watched:
        page = watched.page
        sign_in(watched, console.scenario.token("ana"), "#/satisfaction")
        wait_ready(page, "satisfaction")
        violations = page.evaluate(
            """async () => {
                 const seen = [];
                 document.addEventListener("securitypolicyviolation",
                   e => seen.push(e.violatedDirective));
                 const script = document.createElement("script");
                 script.textContent = "window.injected = true";
                 document.body.append(script);
                 const styled = document.createElement("p");
                 styled.setAttribute("style", "color: rgb(255, 0, 0)");
                 document.body.append(styled);
                 await fetch("http://127.0.0.2:9/").catch(() => null);
                 await new Promise(r => setTimeout(r, 200));
                 return {seen, injected: window.injected === true,
                         colour: getComputedStyle(styled).color};
               }"""
        )
    assert violations["injected"] is False
    assert violations["colour"] != "rgb(255, 0, 0)"
    assert set(violations["seen"]) >= {"script-src-elem", "style-src-attr", "connect-src"}


# --- what the browser keeps after sign-out ------------------------------------------------


def test_nothing_personal_stays_in_the_browser_cache_after_sign_out(console: Console) -> None:
    """The API's answers carry personal data in plaintext: the browser must not keep them
    (a customer's profile was still readable from its HTTP cache, with no token, after
    the person signed out)."""
    customer = str(console.scenario.renamed)
    with console.page() as watched:
        page = watched.page
        sign_in(watched, console.scenario.token("aud"), f"#/customer/{customer}")
        wait_ready(page, "customer")
        expect(page.locator("#customer-name")).to_have_text("Ada King")
        page.click("#sign-out")
        page.wait_for_selector("#sign-in")
        cached = page.evaluate(
            """async (id) => {
                 const found = {};
                 for (const path of [`/v1/customers/${id}`,
                                     `/v1/customers/${id}/timeline?limit=500`]) {
                   try {
                     const answer = await fetch(path, {cache: "only-if-cached",
                                                       mode: "same-origin"});
                     found[path] = await answer.text();
                   } catch {
                     // not in the cache: only-if-cached fails rather than ask the network
                   }
                 }
                 return found;
               }""",
            customer,
        )
    assert cached == {}, f"still in the browser's cache after sign-out: {cached}"
