"""The access model against a reference model written in the tests (`access_reference`).

A hypothesis state machine registers, shares, unshares, hands off, changes owners and
consents, assigns and erases, as principals of all six roles in the three departments,
and after every step holds every principal x every read path of the real API (served by
uvicorn) against the reference: each `GET`, history, each timeline entry, each department
view, customer search, statistics and, at the end of each run, every event each
principal's open stream delivered (judged as of that event) and what a replay of it
delivers (judged as of that event and now). Nothing visible that should not be; every
personal field masked where it must be; every command answered as the reference says.
Department views and search are also held against it before the read models apply a
step's commands: a row older than its aggregate shows nothing its state now hides.
Run on the embedded default and on PostgreSQL.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from contextlib import ExitStack
from pathlib import Path
from typing import Any, ClassVar
from urllib.parse import quote

import httpx
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    RuleBasedStateMachine,
    initialize,
    invariant,
    multiple,
    rule,
    run_state_machine_as_test,
)

from bench.databases import fresh_database
from tests.integration.access_reference import (
    DEPARTMENTS,
    MASKED,
    PRINCIPALS,
    STAFF,
    CustomerRef,
    Reference,
    Who,
    WorkRef,
)
from tests.integration.api_support import EmbeddedApi, embedded_api, served
from tests.integration.stream_support import Event, Stream

Expected = dict[str, list[tuple[str, str]]]  # principal -> [(event type, aggregate id)]
actors = st.sampled_from(PRINCIPALS)
departments = st.sampled_from(DEPARTMENTS)
numbers = itertools.count()


class AccessMachine(RuleBasedStateMachine):
    tmp: ClassVar[Path]
    database_url: ClassVar[str | None] = None

    customers = Bundle("customers")
    work = Bundle("work")

    def __init__(self) -> None:
        super().__init__()
        self.stack = ExitStack()
        run = self.tmp / f"run{next(numbers)}"
        run.mkdir()
        url = self.database_url
        if url is not None:
            url = self.stack.enter_context(fresh_database(url, prefix="crm_access"))
        self.api: EmbeddedApi = self.stack.enter_context(embedded_api(run, database_url=url))
        self.api.app.state.services.stream_poll_seconds = 0.02
        base = self.base = self.stack.enter_context(served(self.api.app))
        self.http = self.stack.enter_context(httpx.Client(base_url=base, timeout=20))
        self.tokens = {w.name: self.api.token(w.name, w.department, w.role) for w in PRINCIPALS}
        self.streams = {
            w.name: Stream(base, "/v1/events/stream", self.tokens[w.name]) for w in PRINCIPALS
        }
        self.ref = Reference()
        self.expected: Expected = {w.name: [] for w in PRINCIPALS}

    # --- commands ---------------------------------------------------------------------

    def send(self, who: Who, method: str, url: str, expected: int, body: Any = None) -> Any:
        response = self.http.request(method, url, json=body, headers=self.tokens[who.name])
        assert response.status_code == expected, (who, method, url, body, response.text)
        return response.json()

    def delivered(self, kind: str, aggregate: str, sees: Callable[[Who], bool]) -> None:
        """An event stored: who must get it on their stream (as of the state after it)."""
        for who in PRINCIPALS:
            if sees(who):
                self.expected[who.name].append((kind, aggregate))

    @initialize(target=customers, department=departments)
    def first_customer(self, department: str) -> str:
        return self.register(Who("service-1", "service", "integration"), department) or ""

    @rule(target=customers, who=actors, department=departments)
    def register_customer(self, who: Who, department: str) -> Any:
        customer = self.register(who, department)
        return multiple() if customer is None else customer

    def register(self, who: Who, department: str) -> str | None:
        expected = self.ref.register(who, department)
        number = next(numbers)
        email, phone = f"person{number}@example.com", f"+4420794{number:05d}"
        body = {"name": f"Person {number}", "email": email, "phone": phone}
        answer = self.send(
            who, "POST", "/v1/customers", expected, body | {"owner_department": department}
        )
        if expected != 201:
            return None
        customer = str(answer["id"])
        self.ref.customers[customer] = CustomerRef(owner=department, email=email, phone=phone)
        self.delivered("CustomerRegistered", customer, self.sees_customer(customer))
        return customer

    def sees_customer(self, customer: str) -> Callable[[Who], bool]:
        return lambda who: self.ref.sees_customer(who, customer)

    def sees_work(self, item: str) -> Callable[[Who], bool]:
        return lambda who: self.ref.sees_work(who, item)

    def sees_now(self, who: Who, aggregate: str) -> bool:
        if aggregate in self.ref.customers:
            return self.ref.sees_customer(who, aggregate)
        return self.ref.sees_work(who, aggregate)

    @rule(who=actors, customer=customers, department=departments)
    def share_or_unshare(self, who: Who, customer: str, department: str) -> None:
        ref = self.ref.customers[customer]
        if department == ref.owner:
            return
        expected = self.ref.owner_change(who, customer)
        if department in ref.shared:
            self.send(who, "DELETE", f"/v1/customers/{customer}/shares/{department}", expected)
            kind = "CustomerUnshared"
        else:
            body = {"department": department}
            self.send(who, "POST", f"/v1/customers/{customer}/shares", expected, body)
            kind = "CustomerShared"
        if expected == 200:
            ref.shared ^= {department}
            self.delivered(kind, customer, self.sees_customer(customer))

    @rule(who=actors, customer=customers, department=departments)
    def change_owner(self, who: Who, customer: str, department: str) -> None:
        ref = self.ref.customers[customer]
        if department == ref.owner:
            return
        expected = self.ref.owner_change(who, customer)
        body = {"department": department}
        self.send(who, "PUT", f"/v1/customers/{customer}/owner", expected, body)
        if expected == 200:
            ref.owner, ref.shared = department, ref.shared - {department}
            self.delivered("CustomerOwnerChanged", customer, self.sees_customer(customer))

    @rule(who=actors, customer=customers, granted=st.booleans())
    def set_consent(self, who: Who, customer: str, granted: bool) -> None:
        ref = self.ref.customers[customer]
        expected = self.ref.consent(who, customer, granted)
        body = {"consents": {"email_marketing": granted}}
        self.send(who, "PUT", f"/v1/customers/{customer}/consents", expected, body)
        if expected == 200 and ref.consent is not granted:  # a first answer is recorded
            ref.consent = granted
            self.delivered("CustomerConsentChanged", customer, self.sees_customer(customer))

    @rule(
        target=work,
        who=actors,
        customer=customers,
        department=departments,
        task=st.booleans(),
        assignee=st.sampled_from(["none", "self", "other"]),
    )
    def open_work(self, who: Who, customer: str, department: str, task: bool, assignee: str) -> Any:
        """A conversation or a task (naming no one, its creator or someone else)."""
        named = {"none": None, "self": who.name, "other": "someone.else"}[assignee]
        expected = self.ref.open_work(who, customer, department, named if task else None)
        text = f"Text {next(numbers)}"
        body: dict[str, Any] = {"customer_id": customer, "department": department}
        if task:
            body |= {"title": text, "assignee": named}
        else:
            body |= {"channel": "phone", "subject": text}
        answer = self.send(
            who, "POST", f"/v1/{'tasks' if task else 'conversations'}", expected, body
        )
        if expected != 201:
            return multiple()
        item = str(answer["id"])
        kind = "task" if task else "conversation"
        self.ref.work[item] = WorkRef(
            kind=kind, customer=customer, department=department, text=text
        )
        event = "TaskCreated" if task else "ConversationOpened"
        self.delivered(event, item, self.sees_work(item))
        return item

    @rule(
        who=actors, item=work, department=departments, assignee=st.sampled_from(["self", "other"])
    )
    def move_work(self, who: Who, item: str, department: str, assignee: str) -> None:
        """A hand-off (conversation) or an assignment (task) to `department`."""
        ref = self.ref.work.get(item)
        if ref is None or department == ref.department:
            return
        if ref.kind == "conversation":
            expected = self.ref.change_work(who, item)
            body: dict[str, Any] = {"to_department": department}
            self.send(who, "POST", f"/v1/conversations/{item}/handoffs", expected, body)
            kind = "ConversationHandedOff"
        else:
            named = who.name if assignee == "self" else "someone.else"
            expected = self.ref.change_work(who, item, named)
            body = {"assignee": named, "department": department}
            self.send(who, "POST", f"/v1/tasks/{item}/assignment", expected, body)
            kind = "TaskAssigned"
        if expected == 200:
            ref.department = department
            self.delivered(kind, item, self.sees_work(item))

    @rule(who=actors, customer=customers)
    def erase(self, who: Who, customer: str) -> None:
        expected = self.ref.erase(who, customer)
        self.send(who, "POST", f"/v1/customers/{customer}/erasure", expected, {"reason": "asked"})
        if expected == 200:
            self.ref.customers[customer].erased = True
            self.delivered("CustomerErased", customer, self.sees_customer(customer))

    # --- every read path, for every principal, after every step -------------------------

    @invariant()
    def every_read_path_matches_the_reference(self) -> None:
        for who in PRINCIPALS:  # the read models behind this step's commands: the staff
            if who.role in STAFF:  # (what others read of a row follows no state)
                self.check_views(who, lagging=True)
                self.check_search(who, lagging=True)
        self.api.catch_up()
        for who in PRINCIPALS:
            self.check_records(who)
            self.check_views(who)
            self.check_search(who)

    def get(self, who: Who, url: str) -> httpx.Response:
        response = self.http.get(url, headers=self.tokens[who.name])
        assert response.status_code < 500, (who, url, response.text)
        return response

    def check_records(self, who: Who) -> None:
        ref = self.ref
        for customer in ref.customers:
            seen = self.get(who, f"/v1/customers/{customer}")
            if not ref.sees_customer(who, customer):
                assert seen.status_code == 404, (who, customer, seen.text)
                continue
            assert seen.json()["email"] == ref.email_seen(who, customer), (who, seen.text)
            assert seen.json()["phone"] == ref.phone_seen(who, customer), (who, seen.text)
            timeline = self.get(who, f"/v1/customers/{customer}/timeline?limit=500").json()
            entries = {e["aggregate_id"] for e in timeline["items"]}
            visible = {
                i for i, w in ref.work.items() if w.customer == customer and ref.sees_work(who, i)
            }
            assert entries == visible, (who, customer)
            if who.role == "analyst":
                assert "Text " not in str(timeline)
            for page in ("", "?cursor=1&limit=1"):  # a later page is judged alike
                history = self.get(who, f"/v1/customers/{customer}/history{page}").status_code
                assert history == (200 if ref.reads_history(who) else 403), (who, page, history)
            self.check_history(who, f"/v1/customers/{customer}", customer)
        for item, work in ref.work.items():
            seen = self.get(who, f"/v1/{work.kind}s/{item}")
            if work.kind == "conversation":  # a page of its messages: read as it is
                messages = self.get(who, f"/v1/conversations/{item}/messages")
                assert messages.status_code == seen.status_code, (who, item, messages.text)
                if messages.status_code == 200:
                    assert messages.json()["messages"] == seen.json()["messages"], (who, item)
            if not ref.sees_work(who, item):
                assert seen.status_code == 404, (who, item, seen.text)
                continue
            self.check_history(who, f"/v1/{work.kind}s/{item}", item)
            text = seen.json()["subject" if work.kind == "conversation" else "title"]
            assert text == ref.text_seen(who, item), (who, item)

    def check_history(self, who: Who, path: str, aggregate: str) -> None:
        """A history (every page, two events a page) holds the events of `aggregate` the
        caller's live stream got, judged as of each event, which they may still read
        now: what a replay of their stream delivers of it (a history is judged alike)."""
        if not self.ref.reads_history(who):
            return
        url, kinds = f"{path}/history?limit=2", []
        while url:
            page = self.get(who, url)
            assert page.status_code == 200, (who, url, page.text)
            kinds += [entry["type"] for entry in page.json()]
            url = page.links.get("next", {}).get("url", "")
        wanted = [kind for kind, item in self.expected[who.name] if item == aggregate]
        assert kinds == wanted, (who, aggregate, kinds, wanted)

    def check_views(self, who: Who, lagging: bool = False) -> None:
        """Each department view as the reference says; `lagging` (the read models not yet
        caught up; the caller's own department's): nothing the reference hides now, and
        any field shown masked."""
        ref = self.ref
        for department in (who.department,) if lagging else DEPARTMENTS:
            views = {
                view: self.get(who, f"/v1/departments/{department}/{view}?limit=500")
                for view in ("customers", "conversations", "tasks")
            }
            if not lagging:
                stats = self.get(who, f"/v1/stats/satisfaction?department={department}")
                assert stats.status_code == (200 if ref.sees_stats(who, department) else 403)
            if not ref.sees_view(who, department):
                assert {v.status_code for v in views.values()} == {403}, (who, department)
                continue
            rows = views["customers"].json()["items"]
            listed = {row["customer_id"]: row["email"] for row in rows}
            members = {c for c, r in ref.customers.items() if department in r.departments}
            assert _holds(set(listed), members, lagging), (who, department)
            for customer, email in listed.items():
                assert email in _seen(ref.email_seen(who, customer), lagging), (who, customer)
            for kind, view in (("conversation", "conversations"), ("task", "tasks")):
                items = {row[f"{kind}_id"] for row in views[view].json()["items"]}
                there = {
                    i for i, w in ref.work.items() if (w.kind, w.department) == (kind, department)
                }
                assert _holds(items, there, lagging), (who, department, view)
                if who.role == "analyst":
                    assert "Text " not in views[view].text

    def check_search(self, who: Who, lagging: bool = False) -> None:
        """Every customer is a "Person N": searching that word finds exactly those the
        principal may read, names included, and that are not erased, e-mails as `GET`
        shows them; `lagging`: none the reference hides now (an erasure not yet applied
        is still found, its fields erased), any e-mail shown masked."""
        found = self.get(who, "/v1/customers?name=PERSON&limit=500")
        assert found.status_code == 200, (who, found.text)
        rows = {row["customer_id"]: row["email"] for row in found.json()["items"]}
        ref = self.ref
        readable = {
            c
            for c, r in ref.customers.items()
            if ref.sees_customer(who, c) and ref.reads_names(who) and (lagging or not r.erased)
        }
        assert _holds(set(rows), readable, lagging), (who, rows)
        for customer, email in rows.items():
            assert email in _seen(ref.email_seen(who, customer), lagging), (who, customer)
        if lagging:
            return
        for customer, r in ref.customers.items():  # found by phone only where it is read
            by_phone = self.get(who, f"/v1/customers?phone={quote(r.phone)}").json()
            wanted = customer in readable and ref.phone_seen(who, customer) == r.phone
            assert [row["customer_id"] for row in by_phone["items"]] == [customer] * wanted

    # --- the streams, at the end of each run -------------------------------------------

    def teardown(self) -> None:
        try:
            self.check_streams()
        finally:
            for stream in self.streams.values():
                stream.close()
            self.stack.close()

    def check_streams(self) -> None:
        """A last event every principal may read ends each stream's comparison."""
        admin = Who("admin-1", "admin", "it")
        marker = self.register(admin, "sales")
        assert marker is not None
        for department in ("support", "marketing"):
            shares = f"/v1/customers/{marker}/shares"
            self.send(admin, "POST", shares, 200, {"department": department})
            self.ref.customers[marker].shared.add(department)
            self.delivered("CustomerShared", marker, self.sees_customer(marker))
        last = ("CustomerShared", marker)

        def final(event: Event) -> bool:
            return _last(event) == last and _to(event) == "marketing"

        for who in PRINCIPALS:
            events = self.streams[who.name].until(final, str(who))
            delivered = [(kind, data["originator_id"]) for kind, _, data in events]
            assert delivered == self.expected[who.name], (who, delivered, self.expected[who.name])
            self.check_masked(who, events)
        self.check_resumed(admin, marker)

    def check_resumed(self, admin: Who, marker: str) -> None:
        """A reconnecting EventSource (`Last-Event-ID: 0`, where every stream started): the
        roles that may read history get what their live stream got of what they may still
        read (a replay is judged then and now); the others start at the head, so they get
        only what follows."""
        resumed = {
            w.name: Stream(self.base, "/v1/events/stream", self.tokens[w.name] | RESUME)
            for w in PRINCIPALS
        }
        try:
            self.send(admin, "POST", f"/v1/customers/{marker}/tags", 200, {"tag": "resumed"})
            last = ("CustomerTagged", marker)
            for who in PRINCIPALS:
                events = resumed[who.name].until(lambda e: _last(e) == last, f"{who} resumed")
                delivered = [(kind, data["originator_id"]) for kind, _, data in events]
                replayed = [e for e in self.expected[who.name] if self.sees_now(who, e[1])]
                replayed = replayed if who.role in REPLAYS else []
                assert delivered == [*replayed, last], (who, delivered)
                self.check_masked(who, events)
        finally:
            for stream in resumed.values():
                stream.close()

    def check_masked(self, who: Who, events: list[Event]) -> None:
        for kind, _, data in events:
            if kind == "CustomerRegistered":
                marketer = who.role in ("agent", "manager") and who.department == "marketing"
                hidden = who.role == "analyst" or marketer  # no consent at registration
                assert (data["email"] == MASKED) is hidden, (who, data)
                assert (data["phone"] == MASKED) is hidden, (who, data)  # never for marketing
            if kind in ("ConversationOpened", "TaskCreated"):
                text = data["subject" if kind == "ConversationOpened" else "title"]
                assert (text == MASKED) is (who.role == "analyst"), (who, data)


RESUME = {"Last-Event-ID": "0"}  # what a reconnecting EventSource sends
REPLAYS = {"manager", "auditor", "admin"}  # roles that may read history (the reference)

RUNS = settings(
    max_examples=5,
    stateful_step_count=8,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)


def test_access_model_on_the_embedded_default(tmp_path: Path) -> None:
    AccessMachine.tmp, AccessMachine.database_url = tmp_path, None
    run_state_machine_as_test(AccessMachine, settings=RUNS)


def test_access_model_on_postgresql(tmp_path: Path, server_url: str) -> None:
    AccessMachine.tmp, AccessMachine.database_url = tmp_path, server_url
    run_state_machine_as_test(AccessMachine, settings=RUNS)


def _holds(shown: set[str], wanted: set[str], lagging: bool) -> bool:
    """A list shows what the reference says; a lagging one may lack some of it."""
    return shown <= wanted if lagging else shown == wanted


def _seen(value: str, lagging: bool) -> set[str]:
    """How a field may be shown: as the reference reads it now, or, by a lagging read
    model, masked (as its row's older state hid it)."""
    return {value, MASKED} if lagging else {value}


def _last(event: Event) -> tuple[str, str]:
    return event[0], event[2]["originator_id"]


def _to(event: Event) -> str | None:
    department: str | None = event[2].get("department")
    return department
