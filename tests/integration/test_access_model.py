"""The access model against a reference model written in the tests (`access_reference`).

A hypothesis state machine registers, shares, unshares, hands off, changes owners and
consents, assigns and erases; changes profiles, tags, orders and archives customers; logs
messages (inbound ones authored by the customer's e-mail, phone or name) and notes,
corrects and retracts them, closes and reopens conversations and records survey answers;
changes, starts, progresses, completes, evaluates, reopens and cancels tasks; as
principals of all six roles in the three departments (each run starts with a customer, a
conversation and a task). Every command is answered as the reference says: its access
rule, else what the state refuses (the reference states both plainly). After every step it
holds every principal x every read path of the real API (served by uvicorn) against the
reference: each `GET` (customers also `?as_of=`), history, every `/messages` page, each
timeline entry and its author, each department view, customer search (by name, e-mail,
phone, company, tag), statistics, the departments, `ping`, the audit routes and, at the
end of each run, every event each principal's open stream delivered (judged as of that
event) and what a replay of it delivers (`Last-Event-ID`, `?after=`; judged as of that
event and now). Nothing visible that should not be; every personal field (a message's
author and a correction's or retraction's reason included) masked where it must be; a
task's due time (not personal) whole for all who read the task, in its `GET` and on the
board; the due-time rules of a task's assignee (who may not move a passed one, nor be
assigned a task whose passed due time they moved, nor reopen a late completion); each
`GET` an `ETag` of the version it shows, and what the caller may not read answered
exactly as an id that exists nowhere (`access_preconditions.as_nowhere`). Commands under
Idempotency-Key (one key, three principals) and If-Match are held against it too
(`access_preconditions`). Department views and search are also held
against it before the read models apply a step's commands: a row older than its aggregate
shows nothing its state now hides. Run on the embedded default and on PostgreSQL.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from contextlib import ExitStack
from pathlib import Path
from typing import Any, ClassVar, NamedTuple
from urllib.parse import quote

import httpx
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    initialize,
    invariant,
    multiple,
    rule,
    run_state_machine_as_test,
)

from bench.databases import fresh_database
from tests.integration.access_preconditions import IF_MATCH, Preconditions
from tests.integration.access_reference import (
    DEPARTMENTS,
    FUTURE,
    MASKED,
    PAST,
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
INBOUND = ("email", "phone", "name")  # what an inbound message's author is of its customer
dues = st.sampled_from((None, FUTURE, PAST))  # a task's due time: none, ahead, passed
MARKETERS = {w.name for w in PRINCIPALS if w.role in STAFF and w.department == "marketing"}
departments = st.sampled_from(DEPARTMENTS)
numbers = itertools.count()


class AccessMachine(Preconditions):
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
        self.reasons: Expected = {w.name: [] for w in PRINCIPALS}  # (aggregate, reason)
        self.nowhere: dict[tuple[str, str], httpx.Response] = {}  # `as_nowhere`'s reads

    # --- commands ---------------------------------------------------------------------

    def send(self, who: Who, method: str, url: str, expected: int, body: Any = None) -> Any:
        response = self.http.request(method, url, json=body, headers=self.tokens[who.name])
        assert response.status_code == expected, (who, method, url, body, response.text)
        return response.json()

    def delivered(
        self, kind: str, aggregate: str, sees: Callable[[Who], bool], reason: str | None = None
    ) -> None:
        """An event stored: who must get it on their stream (as of the state after it);
        `reason`: a correction's or retraction's, which its history shows."""
        for who in PRINCIPALS:
            if sees(who):
                self.expected[who.name].append((kind, aggregate))
                if reason is not None:
                    self.reasons[who.name].append((aggregate, reason))

    @initialize(target=customers, department=departments)
    def first_customer(self, department: str) -> str:
        return self.register(Who("service-1", "service", "integration"), department) or ""

    @initialize(
        target=work,
        department=departments,
        inbound=st.sampled_from(INBOUND),
        task_by=st.tuples(actors, dues),
        keyed=st.tuples(actors, actors, actors),
        conditional=st.tuples(actors, st.sampled_from(IF_MATCH)),
    )
    def first_work(
        self,
        department: str,
        inbound: str,
        task_by: tuple[Who, str | None],
        keyed: tuple[Who, Who, Who],
        conditional: tuple[Who, str],
    ) -> Any:
        """A customer of `department`'s own, with a task there and a conversation in
        marketing holding a message from the customer (authored by their e-mail, phone
        or name), corrected with a reason: every run has work for the commands on it,
        and marketing staff read authors of a customer they may not read, from the first
        step on. The task is `task_by`'s, due by a time that has passed, which they may
        not move (to the time `task_by` names); the service moves it, and may then not
        take the task itself (from another department). Then a note on the conversation
        under one Idempotency-Key by three principals (`keyed`) and progress on the task
        under If-Match (`conditional`)."""
        service = Who("service-1", "service", "integration")
        customer = self.register(service, department) or ""
        assignee, due = task_by
        conversation = str(self.open_work(service, customer, "marketing", False, "none"))
        for command in ("inbound", "correct"):
            self.change_work(service, conversation, CONVERSATION_COMMANDS.index(command), inbound)
        task = str(
            self.open_work(
                service, customer, department, True, "other", due=PAST, named=assignee.name
            )
        )
        moved = TASK_COMMANDS.index("due")
        self.change_work(assignee, task, moved, inbound, due)
        self.change_work(service, task, moved, inbound, FUTURE if due == PAST else due)
        elsewhere = DEPARTMENTS[(DEPARTMENTS.index(department) + 1) % len(DEPARTMENTS)]
        self.move_work(service, task, elsewhere, "self")
        self.keyed_by_three(*keyed, "conversation", conversation)
        self.conditional(conditional[0], "task", task, conditional[1])
        return multiple(conversation, task)

    @rule(target=customers, who=actors, department=departments)
    def register_customer(self, who: Who, department: str) -> Any:
        customer = self.register(who, department)
        return multiple() if customer is None else customer

    def register(self, who: Who, department: str) -> str | None:
        expected = self.ref.register(who, department)
        number = next(numbers)
        name, company = f"Person {number}", f"Co-{number:05d}"
        email, phone = f"person{number}@example.com", f"+4420794{number:05d}"
        body = {"name": name, "email": email, "phone": phone, "company": company}
        answer = self.send(
            who, "POST", "/v1/customers", expected, body | {"owner_department": department}
        )
        if expected != 201:
            return None
        customer = str(answer["id"])
        self.ref.customers[customer] = CustomerRef(
            owner=department, name=name, email=email, phone=phone, company=company
        )
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
        due=dues,
    )
    def open_work(
        self,
        who: Who,
        customer: str,
        department: str,
        task: bool,
        assignee: str,
        *,
        due: str | None = None,
        named: str | None = None,
    ) -> Any:
        """A conversation or a task (naming no one, its creator or someone else: `named`
        or `someone.else`; due by `due`)."""
        named = {"none": None, "self": who.name, "other": named or "someone.else"}[assignee]
        expected = self.ref.open_work(who, customer, department, named if task else None)
        text = f"Text {next(numbers)}"
        body: dict[str, Any] = {"customer_id": customer, "department": department}
        if task:
            body |= {"title": text, "assignee": named, "due_at": due}
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
            kind=kind,
            customer=customer,
            department=department,
            text=text,
            assignee=named if task else None,
            due=due if task else None,
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
        named = who.name if assignee == "self" else "someone.else"
        if ref.kind == "conversation":
            expected = self.expected_of(who, item, "handoff", self.ref.change_work(who, item))
            body: dict[str, Any] = {"to_department": department}
            self.send(who, "POST", f"/v1/conversations/{item}/handoffs", expected, body)
            kind = "ConversationHandedOff"
        else:
            access = self.ref.change_work(who, item, named)
            expected = self.expected_of(who, item, "assign", access, named)
            body = {"assignee": named, "department": department}
            self.send(who, "POST", f"/v1/tasks/{item}/assignment", expected, body)
            kind = "TaskAssigned"
        if expected == 200:
            ref.department = department
            ref.assignee = named if ref.kind == "task" else None
            self.delivered(kind, item, self.sees_work(item))

    def expected_of(
        self, who: Who, item: str, command: str, access: int, named: str | None = None
    ) -> int:
        """The access model's answer, else the state's refusal, else `ok`."""
        if access not in (200, 201):
            return access
        return self.ref.refused_by_state(who, item, command, named) or access

    @rule(
        who=actors,
        customer=customers,
        command=st.sampled_from(("profile", "tag", "untag", "order", "order_status", "archive")),
    )
    def change_customer(self, who: Who, customer: str, command: str) -> None:
        """A customer's profile (its company), tags, orders, or its archiving."""
        ref, number = self.ref.customers[customer], next(numbers)
        url = f"/v1/customers/{customer}"
        tag, order = min(ref.tags, default=""), min(ref.orders, default="")
        calls: dict[str, tuple[str, str, Any, str]] = {
            "profile": ("PATCH", url, {"company": f"Co-{number:05d}"}, "CustomerProfileUpdated"),
            "tag": ("POST", f"{url}/tags", {"tag": f"t{number}"}, "CustomerTagged"),
            "untag": ("DELETE", f"{url}/tags/{tag}", None, "CustomerUntagged"),
            "order": (
                "POST",
                f"{url}/orders",
                ORDER | {"order_id": f"o-{number}"},
                "OrderRecorded",
            ),
            "order_status": (
                "PATCH",
                f"{url}/orders/{order}",
                {"status": f"s{number}"},
                "OrderStatusChanged",
            ),
            "archive": ("DELETE", url, None, "CustomerArchived"),
        }
        if (command == "untag" and not ref.tags) or (command == "order_status" and not ref.orders):
            return
        method, path, body, kind = calls[command]
        expected = self.ref.customer_change(
            who,
            customer,
            owner_only=command == "archive",
            archived_too=command in ("order_status", "archive"),
        )
        self.send(who, method, path, expected, body)
        if expected != 200 or (command == "archive" and ref.archived):  # archived already
            return
        if command == "profile":
            ref.company = body["company"]
        elif command in ("tag", "untag"):
            ref.tags ^= {tag if command == "untag" else body["tag"]}
        elif command == "order":
            ref.orders.add(body["order_id"])
        elif command == "archive":
            ref.archived = True
        self.delivered(kind, customer, self.sees_customer(customer))

    @rule(
        who=actors,
        item=work,
        pick=st.integers(0, 8),
        inbound=st.sampled_from(INBOUND),
        due=dues,
    )
    def change_work(
        self, who: Who, item: str, pick: int, inbound: str, due: str | None = None
    ) -> None:
        """A conversation's entries (inbound ones authored by the customer's e-mail, phone
        or name), corrections, retractions (each with a reason of its own), closing,
        reopening and survey answers; a task's details, due time (`due`), start, progress,
        completion, evaluation, reopening, cancelling."""
        ref = self.ref.work[item]
        commands = CONVERSATION_COMMANDS if ref.kind == "conversation" else TASK_COMMANDS
        command = commands[pick % len(commands)]
        live = [entry for entry, author in ref.authors.items() if author is not None]
        if command in ("correct", "retract") and not live:
            return
        customer, number = self.ref.customers[ref.customer], next(numbers)
        author = {
            "inbound": getattr(customer, inbound),
            "outbound": who.name,
            "note": who.name,
        }.get(command)
        call = WorkCall(ref.kind, item, author, f"Text {number}", live, f"Reason {number}", due)
        method, path, body, kind = call.made(command)
        survey = command in ("csat", "nps")
        access = self.ref.survey(who, item) if survey else self.ref.change_work(who, item)
        ok = 201 if command in ("inbound", "outbound", "note") else 200
        state = {"inbound": "message", "outbound": "message"}.get(command, command)
        unchanged = command == "due" and due == ref.due  # as a PATCH of nothing
        state = "patch" if unchanged else state
        expected = self.expected_of(who, item, state, access if access != 200 else ok)
        answer = self.send(who, method, path, expected, body)
        if expected == ok and not unchanged:
            self.applied(who, item, call, command, answer)
            reason = call.reason if command in ("correct", "retract") else None
            self.delivered(kind, item, self.sees_work(item), reason)

    def applied(self, who: Who, item: str, call: WorkCall, command: str, answer: Any) -> None:
        """The reference after a conversation's or task's command that it took."""
        ref = self.ref.work[item]
        if call.author is not None and command in ("inbound", "outbound", "note"):
            ref.authors[str(answer["message_id"])] = call.author
        elif command in ("correct", "retract"):
            ref.reasons[call.live[-1]] = call.reason
            if command == "retract":
                ref.authors[call.live[-1]] = None
        elif command == "patch":
            ref.text = call.text
        elif command == "due":
            ref.move_due(who, call.due)
        elif command in ("csat", "nps", "evaluation"):
            ref.answered.add(command)
        elif command in STATUS_AFTER:
            ref.late = command == "complete" and ref.due == PAST
            ref.status = STATUS_AFTER[command][ref.kind]
            if command == "reopen":
                ref.answered.clear()

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
            self.check_other_reads(who)

    def get(self, who: Who, url: str) -> httpx.Response:
        response = self.http.get(url, headers=self.tokens[who.name])
        assert response.status_code < 500, (who, url, response.text)
        return response

    def check_records(self, who: Who) -> None:
        ref = self.ref
        for customer in ref.customers:
            seen = self.get(who, f"/v1/customers/{customer}")
            if not ref.sees_customer(who, customer):
                self.as_nowhere(who, seen, f"/v1/customers/{customer}", customer)
                continue
            assert seen.headers["etag"] == f'"{seen.json()["version"]}"', (who, seen.headers)
            assert seen.json()["email"] == ref.email_seen(who, customer), (who, seen.text)
            assert seen.json()["phone"] == ref.phone_seen(who, customer), (who, seen.text)
            self.check_as_of(who, customer)
            timeline = self.get(who, f"/v1/customers/{customer}/timeline?limit=500").json()
            entries = {e["aggregate_id"] for e in timeline["items"]}
            visible = {
                i for i, w in ref.work.items() if w.customer == customer and ref.sees_work(who, i)
            }
            assert entries == visible, (who, customer)
            for item in visible:  # each entry's author (a retracted entry leaves the timeline)
                authors = [
                    e["author"]
                    for e in timeline["items"]
                    if e["aggregate_id"] == item and e["author"] is not None
                ]
                kept = zip(
                    ref.work[item].authors.values(), ref.authors_seen(who, item), strict=True
                )
                wanted = [seen for author, seen in kept if author is not None]
                assert sorted(authors) == sorted(wanted), (who, item, authors, wanted)
            if who.role == "analyst":
                assert "Text " not in str(timeline)
            for page in ("", "?cursor=1&limit=1"):  # a later page is judged alike
                history = self.get(who, f"/v1/customers/{customer}/history{page}").status_code
                assert history == (200 if ref.reads_history(who) else 403), (who, page, history)
            self.check_history(who, f"/v1/customers/{customer}", customer)
        for item, work in ref.work.items():
            seen = self.get(who, f"/v1/{work.kind}s/{item}")
            if work.kind == "conversation":  # its messages, two a page: read as it is
                first, messages = self.paged_messages(who, item)
                assert first.status_code == seen.status_code, (who, item, messages)
                if first.status_code == 200:
                    assert messages == seen.json()["messages"], (who, item)
                else:
                    self.as_nowhere(who, first, str(first.url.raw_path, "ascii"), item)
            if not ref.sees_work(who, item):
                self.as_nowhere(who, seen, f"/v1/{work.kind}s/{item}", item)
                continue
            assert seen.headers["etag"] == f'"{seen.json()["version"]}"', (who, seen.headers)
            self.check_history(who, f"/v1/{work.kind}s/{item}", item)
            text = seen.json()["subject" if work.kind == "conversation" else "title"]
            assert text == ref.text_seen(who, item), (who, item)
            if work.kind == "task":
                assert seen.json()["due_at"] == ref.due_seen(who, item), (who, seen.text)
                continue
            authors = [m["author"] for m in seen.json()["messages"]]
            assert authors == ref.authors_seen(who, item), (who, item, authors)
            reasons = [m["reason"] for m in seen.json()["messages"]]
            assert reasons == ref.reasons_seen(who, item), (who, item, reasons)

    def paged_messages(self, who: Who, item: str) -> tuple[httpx.Response, list[Any]]:
        """Every `/messages` page of a conversation (and the first page)."""
        first = page = self.get(who, f"/v1/conversations/{item}/messages?limit=2")
        messages: list[Any] = []
        while page.status_code == 200:
            messages += page.json()["messages"]
            after = page.json()["next_cursor"]
            if not after:
                return first, messages
            page = self.get(who, f"/v1/conversations/{item}/messages?limit=2&after={quote(after)}")
        assert page.status_code == first.status_code, (who, item, page.text)
        return first, []

    def check_as_of(self, who: Who, customer: str) -> None:
        """`?as_of=`: auditors' and admins' (others: 403); later than every step the state
        now, before the customer existed a 404."""
        ref = self.ref
        later = self.get(who, f"/v1/customers/{customer}?as_of={LATER}")
        earlier = self.get(who, f"/v1/customers/{customer}?as_of={EARLIER}")
        if not ref.reads_as_of(who):
            assert (later.status_code, earlier.status_code) == (403, 403), (who, later.text)
            return
        assert earlier.status_code == 404, (who, earlier.text)
        assert later.status_code == 200, (who, later.text)
        assert later.json()["email"] == ref.email_seen(who, customer), (who, later.text)
        assert later.json()["phone"] == ref.phone_seen(who, customer), (who, later.text)

    def check_history(self, who: Who, path: str, aggregate: str) -> None:
        """A history (every page, two events a page) holds the events of `aggregate` the
        caller's live stream got, judged as of each event, which they may still read
        now: what a replay of their stream delivers of it (a history is judged alike)."""
        if not self.ref.reads_history(who):
            return
        url, entries = f"{path}/history?limit=2", []
        while url:
            page = self.get(who, url)
            assert page.status_code == 200, (who, url, page.text)
            entries += page.json()
            url = page.links.get("next", {}).get("url", "")
        kinds = [entry["type"] for entry in entries]
        wanted = [kind for kind, item in self.expected[who.name] if item == aggregate]
        assert kinds == wanted, (who, aggregate, kinds, wanted)
        if aggregate not in self.ref.work:
            return
        reasons = [e["data"]["reason"] for e in entries if e["type"] in CORRECTIONS]
        customer = self.ref.work[aggregate].customer
        wanted = [
            self.ref.personal_seen(who, customer, reason)
            for item, reason in self.reasons[who.name]
            if item == aggregate
        ]
        assert reasons == wanted, (who, aggregate, reasons, wanted)

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
                for stats in ("satisfaction", "tasks"):
                    answer = self.get(who, f"/v1/stats/{stats}?department={department}")
                    wanted = 200 if ref.sees_stats(who, department) else 403
                    assert answer.status_code == wanted, (who, stats, answer.text)
            if not ref.sees_view(who, department):
                assert {v.status_code for v in views.values()} == {403}, (who, department)
                continue
            rows = views["customers"].json()["items"]
            listed = {row["customer_id"]: row["email"] for row in rows}
            members = {
                c
                for c, r in ref.customers.items()
                if department in r.departments and (lagging or not r.archived)
            }  # a row lagging behind an archiving still lists its customer
            assert _holds(set(listed), members, lagging), (who, department)
            for customer, email in listed.items():
                assert email in _seen(ref.email_seen(who, customer), lagging), (who, customer)
            for kind, view in (("conversation", "conversations"), ("task", "tasks")):
                entries = views[view].json()["items"]
                items = {row[f"{kind}_id"] for row in entries}
                if kind == "task" and not lagging:  # a due time is not personal
                    dues = {row["task_id"]: row["due_at"] for row in entries}
                    assert all(dues[i] == ref.due_seen(who, i) for i in items), (who, dues)
                there = {  # the queue and the board (a lagging row: any)
                    i
                    for i, w in ref.work.items()
                    if (w.kind, w.department) == (kind, department) and (lagging or ref.listed(i))
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
            if ref.sees_customer(who, c)
            and ref.reads_names(who)
            and (lagging or not (r.erased or r.archived))
        }
        assert _holds(set(rows), readable, lagging), (who, rows)
        for customer, email in rows.items():
            assert email in _seen(ref.email_seen(who, customer), lagging), (who, customer)
        if lagging:
            return
        for customer, r in ref.customers.items():  # by a personal value only where it is read
            searches = [
                ("phone", r.phone, ref.found_by_phone(who, customer)),
                ("email", r.email, ref.found_by_email(who, customer)),
                ("company", r.company, ref.listed_in_search(who, customer)),
            ]
            if r.tags:
                searches.append(("tag", min(r.tags), ref.listed_in_search(who, customer)))
            for key, value, wanted in searches:
                found = self.get(who, f"/v1/customers?{key}={quote(value)}")
                assert found.status_code == 200, (who, key, found.text)
                ids = [row["customer_id"] for row in found.json()["items"]]
                assert ids == [customer] * wanted, (who, key, value, ids)

    def check_other_reads(self, who: Who) -> None:
        """The configured departments and `ping` for every caller; the audit routes for
        auditors and admins, whose access log names no author a marketer read."""
        ref = self.ref
        departments = self.get(who, "/v1/departments")
        assert departments.status_code == 200, (who, departments.text)
        assert departments.json() == {"departments": list(DEPARTMENTS)}, (who, departments.text)
        assert self.get(who, "/v1/ping").status_code == 200
        for route in ("/v1/audit/checkpoints", "/v1/audit/access?limit=500"):
            answer = self.get(who, route)
            assert answer.status_code == (200 if ref.reads_audit(who) else 403), (who, route)
        if who.role == "auditor":
            stored = self.get(who, "/v1/audit/access?limit=500").json()["items"]
            for record in (item["record"] for item in stored):
                if record["principal"] in MARKETERS:
                    assert not any(f.endswith("author") for f in record["fields"]), record

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

        lived: dict[str, list[Event]] = {}
        for who in PRINCIPALS:
            events = lived[who.name] = self.streams[who.name].until(final, str(who))
            delivered = [(kind, data["originator_id"]) for kind, _, data in events]
            assert delivered == self.expected[who.name], (who, delivered, self.expected[who.name])
            self.check_masked(who, events)
        self.check_resumed(admin, marker, lived)

    def check_resumed(self, admin: Who, marker: str, lived: dict[str, list[Event]]) -> None:
        """A reconnecting EventSource (`Last-Event-ID: 0`, where every stream started): the
        roles that may read history get what their live stream got of what they may still
        read (a replay is judged then and now); the others start at the head, so they get
        only what follows. `?after=N` (N: half way through the admin's stream) is theirs
        alone (others: 403), and replays what came after N alike."""
        middle = lived[admin.name][len(lived[admin.name]) // 2][1]
        resumed = {
            w.name: Stream(self.base, "/v1/events/stream", self.tokens[w.name] | RESUME)
            for w in PRINCIPALS
        }
        after = {
            w.name: Stream(self.base, f"/v1/events/stream?after={middle}", self.tokens[w.name])
            for w in PRINCIPALS
            if w.role in REPLAYS
        }
        for who in PRINCIPALS:  # a refusal answers at once: no stream to read
            if who.role not in REPLAYS:
                refused = self.get(who, f"/v1/events/stream?after={middle}")
                assert refused.status_code == 403, (who, refused.text)
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
                if who.role not in REPLAYS:
                    continue
                events = after[who.name].until(lambda e: _last(e) == last, f"{who} after")
                delivered = [(kind, data["originator_id"]) for kind, _, data in events]
                since = [
                    (kind, data["originator_id"])
                    for kind, position, data in lived[who.name]
                    if position > middle and self.sees_now(who, data["originator_id"])
                ]
                assert delivered == [*since, last], (who, middle, delivered)
                self.check_masked(who, events)
        finally:
            for stream in (*resumed.values(), *after.values()):
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
            if kind in CORRECTIONS:  # personal, as an entry's content
                assert (data["reason"] == MASKED) is (who.role == "analyst"), (who, data)
            if kind in ("TaskCreated", "TaskDueDateChanged"):  # not personal
                assert MASKED not in (data.get("due_at"), data.get("to_due_at")), (who, data)
            if kind == "MessageLogged":  # whatever the consent
                hidden = who.role == "analyst" or who.name in MARKETERS
                assert (data["author"] == MASKED) is hidden, (who, data)
            if kind == "InternalNoteAdded":  # its author is its actor, in the event not personal
                assert data["author"] == data["actor"], (who, data)


ORDER = {"amount": "10.00", "currency": "EUR"}
CORRECTIONS = ("MessageCorrected", "MessageRetracted")  # events holding an entry's reason
CONVERSATION_COMMANDS = (
    "inbound", "outbound", "note", "correct", "retract", "close", "reopen", "csat", "nps",
)  # fmt: skip
TASK_COMMANDS = ("patch", "due", "start", "progress", "complete", "evaluation", "reopen", "cancel")
STATUS_AFTER = {
    "close": {"conversation": "closed"},
    "reopen": {"conversation": "open", "task": "open"},
    "start": {"task": "in_progress"},
    "complete": {"task": "completed"},
    "cancel": {"task": "cancelled"},
}
WORK_EVENTS = {
    "inbound": "MessageLogged",
    "outbound": "MessageLogged",
    "note": "InternalNoteAdded",
    "correct": "MessageCorrected",
    "retract": "MessageRetracted",
    "close": "ConversationClosed",
    "csat": "SatisfactionRated",
    "nps": "RecommendationScored",
    "patch": "TaskDetailsChanged",
    "due": "TaskDueDateChanged",
    "start": "TaskStarted",
    "progress": "TaskProgressLogged",
    "complete": "TaskCompleted",
    "evaluation": "TaskEvaluated",
    "cancel": "TaskCancelled",
}


class WorkCall(NamedTuple):
    """What a conversation's or task's command names: its author (a new entry's), its
    text, the live entries (the last one is corrected or retracted), its reason (a
    correction's or retraction's) and its due time (a task's)."""

    kind: str
    item: str
    author: str | None
    text: str
    live: list[str]
    reason: str
    due: str | None

    def made(self, command: str) -> tuple[str, str, Any, str]:
        """method, path, body and the event a work command stores."""
        return _work_call(self, command)


def _work_call(call: WorkCall, command: str) -> tuple[str, str, Any, str]:
    kind, url, author, text = call.kind, f"/v1/{call.kind}s/{call.item}", call.author, call.text
    entry = f"{url}/messages/{call.live[-1] if call.live else ''}"
    bodies: dict[str, tuple[str, str, Any]] = {
        "inbound": ("POST", f"{url}/messages", {"direction": "inbound", "author": author}),
        "outbound": ("POST", f"{url}/messages", {"direction": "outbound", "author": author}),
        "note": ("POST", f"{url}/notes", {}),
        "correct": ("PATCH", entry, {"content": text, "reason": call.reason}),
        "retract": ("DELETE", f"{entry}?reason={quote(call.reason)}", None),
        "close": ("POST", f"{url}/close", {"outcome": "resolved"}),
        "reopen": ("POST", f"{url}/reopen", {"reason": "again"}),
        "csat": ("POST", f"{url}/csat", {"score": 5}),
        "nps": ("POST", f"{url}/nps", {"score": 9}),
        "patch": ("PATCH", url, {"title": text}),
        "due": ("PATCH", url, {"due_at": call.due}),
        "start": ("POST", f"{url}/start", None),
        "progress": ("POST", f"{url}/progress", {"note": "n", "percent": 10}),
        "complete": ("POST", f"{url}/complete", {"resolution": "r"}),
        "evaluation": ("POST", f"{url}/evaluation", {"score": 4}),
        "cancel": ("POST", f"{url}/cancel", {"reason": "no"}),
    }
    method, path, body = bodies[command]
    if command in ("inbound", "outbound", "note"):
        body |= {"content": text}
    reopened = "ConversationReopened" if kind == "conversation" else "TaskReopened"
    return method, path, body, WORK_EVENTS.get(command, reopened)


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


LATER, EARLIER = "2999-01-01T00:00:00Z", "1999-01-01T00:00:00Z"  # `as_of` instants


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
