"""One test per way the API leaked data or let people act beyond their role before the one
access model (issue 13), each of which failed on the code before it. Embedded mode, a real
uvicorn (the event stream needs one)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.integration.api_support import EmbeddedApi, embedded_api, served
from tests.integration.stream_support import Stream, about

Headers = dict[str, str]


@pytest.fixture
def api(tmp_path: Path) -> Iterator[EmbeddedApi]:
    with embedded_api(tmp_path) as embedded:
        embedded.app.state.services.stream_poll_seconds = 0.05
        yield embedded


@pytest.fixture
def base(api: EmbeddedApi) -> Iterator[str]:
    with served(api.app) as url:
        yield url


@pytest.fixture
def http(base: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=base, timeout=10) as client:
        yield client


def post(http: httpx.Client, url: str, body: dict[str, Any], headers: Headers) -> str:
    response = http.post(url, json=body, headers=headers)
    assert response.status_code in (200, 201), response.text
    return str(response.json()["id"])


def support_customer_shared_with_sales(http: httpx.Client, support: Headers) -> str:
    body = {"name": "Grace Hopper", "email": "grace@example.com", "phone": "+44 20 7946 0001"}
    customer = post(http, "/v1/customers", body, support)
    post(http, f"/v1/customers/{customer}/shares", {"department": "sales"}, support)
    return customer


def test_the_timeline_shows_only_entries_of_readable_conversations_and_tasks(
    api: EmbeddedApi, http: httpx.Client
) -> None:
    support, sales = api.token("sue", "support", "agent"), api.token("sam", "sales", "agent")
    customer = support_customer_shared_with_sales(http, support)
    opened = {"customer_id": customer, "channel": "phone", "subject": "secret-subject"}
    conversation = post(http, "/v1/conversations", opened, support)
    message = {"direction": "inbound", "author": "grace", "content": "secret-message"}
    post(http, f"/v1/conversations/{conversation}/messages", message, support)
    task = {"customer_id": customer, "title": "secret-title", "description": "secret-text"}
    task_id = post(http, "/v1/tasks", task, support)
    mine = post(http, "/v1/conversations", opened | {"subject": "sales-subject"}, sales)
    api.catch_up()
    assert http.get(f"/v1/conversations/{conversation}", headers=sales).status_code == 404
    assert http.get(f"/v1/tasks/{task_id}", headers=sales).status_code == 404
    timeline = http.get(f"/v1/customers/{customer}/timeline", headers=sales)
    assert timeline.status_code == 200
    assert {e["aggregate_id"] for e in timeline.json()["items"]} == {mine}
    assert "secret" not in timeline.text
    theirs = http.get(f"/v1/customers/{customer}/timeline", headers=support).json()["items"]
    assert {e["aggregate_id"] for e in theirs} == {conversation, task_id, mine} - {mine}


def test_the_stream_follows_unshares_hand_offs_and_owner_changes(
    api: EmbeddedApi, http: httpx.Client, base: str
) -> None:
    support, sales = api.token("sue", "support", "agent"), api.token("sam", "sales", "agent")
    stream = Stream(base, "/v1/events/stream", support)
    try:
        customer = post(http, "/v1/customers", {"name": "Ada", "email": "a@x.com"}, sales)
        post(http, f"/v1/customers/{customer}/shares", {"department": "support"}, sales)
        http.delete(f"/v1/customers/{customer}/shares/support", headers=sales)
        contact = {"email": "new@x.com", "phone": "+44 20 7946 0002"}
        assert http.patch(f"/v1/customers/{customer}", json=contact, headers=sales).is_success
        opened = {"customer_id": customer, "channel": "chat", "subject": "s"}
        handed = post(http, "/v1/conversations", opened, sales)
        to_support = {"to_department": "support"}
        post(http, f"/v1/conversations/{handed}/handoffs", to_support, sales)
        post(http, f"/v1/conversations/{handed}/handoffs", {"to_department": "sales"}, support)
        post(http, f"/v1/conversations/{handed}/close", {"outcome": "resolved"}, sales)
        marker = post(http, "/v1/customers", {"name": "Marker"}, support)
        seen = stream.until(about(marker), "support's own marker customer")
    finally:
        stream.close()
    delivered = [(kind, data["originator_id"]) for kind, _, data in seen]
    assert delivered == [
        ("CustomerShared", customer),
        ("ConversationHandedOff", handed),
        ("CustomerRegistered", marker),
    ]
    assert "new@x.com" not in str(seen)


def test_replaying_the_stream_needs_the_right_to_read_history(
    api: EmbeddedApi, http: httpx.Client
) -> None:
    agent, manager = api.token("sam", "sales", "agent"), api.token("max", "sales", "manager")
    refused = http.get("/v1/events/stream?after=0", headers=agent)
    assert (refused.status_code, refused.json()["rule"]) == (403, "agent:history.read:denied")
    with http.stream("GET", "/v1/events/stream?after=0", headers=manager) as allowed:
        assert allowed.status_code == 200


def test_a_revoked_token_ends_its_open_streams(
    api: EmbeddedApi, http: httpx.Client, base: str
) -> None:
    sales = api.token("sam", "sales", "agent")
    stream = Stream(base, "/v1/events/stream", sales)
    try:
        first = post(http, "/v1/customers", {"name": "Before"}, sales)
        stream.until(about(first), "the event before revocation")
        api.app.state.services.principals.revoke("sam")
        assert stream.ended.wait(30), "the stream outlived its revoked token"
        admin = api.token("root", "it", "admin")
        post(http, "/v1/customers", {"name": "After", "owner_department": "sales"}, admin)
    finally:
        stream.close()
    assert [data["originator_id"] for _, _, data in stream.events] == [first]


def test_a_shared_with_department_cannot_take_a_customer_over(
    api: EmbeddedApi, http: httpx.Client
) -> None:
    support, sales = api.token("sue", "support", "agent"), api.token("sam", "sales", "agent")
    customer = support_customer_shared_with_sales(http, support)
    taken = http.put(f"/v1/customers/{customer}/owner", json={"department": "sales"}, headers=sales)
    assert (taken.status_code, taken.json()["rule"]) == (403, "agent:customer.owner:owner")
    assert http.get(f"/v1/customers/{customer}", headers=support).json()["owner_department"] == (
        "support"
    )


def test_a_consent_change_never_unmasks_for_its_caller(
    api: EmbeddedApi, http: httpx.Client
) -> None:
    sales, marketing = api.token("sam", "sales", "agent"), api.token("mia", "marketing", "agent")
    customer = post(http, "/v1/customers", {"name": "Ada", "email": "ada@x.com"}, sales)
    post(http, f"/v1/customers/{customer}/shares", {"department": "marketing"}, sales)
    grant = {"consents": {"email_marketing": True}}
    refused = http.put(f"/v1/customers/{customer}/consents", json=grant, headers=marketing)
    assert (refused.status_code, refused.json()["rule"]) == (
        403,
        "agent:customer.update:widens-own-view",
    )
    assert http.get(f"/v1/customers/{customer}", headers=marketing).json()["email"] == "[masked]"
    assert http.put(f"/v1/customers/{customer}/consents", json=grant, headers=sales).is_success
    withdraw = {"consents": {"email_marketing": False}}
    assert http.put(
        f"/v1/customers/{customer}/consents", json=withdraw, headers=marketing
    ).is_success


def test_creating_a_task_for_someone_else_is_an_assignment(
    api: EmbeddedApi, http: httpx.Client
) -> None:
    sales = api.token("sam", "sales", "agent")
    customer = post(http, "/v1/customers", {"name": "Ada"}, sales)
    task = {"customer_id": customer, "title": "t", "assignee": "other.agent"}
    refused = http.post("/v1/tasks", json=task, headers=sales)
    assert (refused.status_code, refused.json()["rule"]) == (403, "agent:task.assign:denied")
    assert http.post("/v1/tasks", json=task | {"assignee": "sam"}, headers=sales).status_code == 201


def test_departments_are_a_configured_closed_set(api: EmbeddedApi, http: httpx.Client) -> None:
    sales = api.token("sam", "sales", "agent")
    customer = post(http, "/v1/customers", {"name": "Ada"}, sales)
    opened = {"customer_id": customer, "channel": "phone", "subject": "s"}
    nowhere = http.post(
        "/v1/conversations", json=opened | {"department": "nonexistent-dept"}, headers=sales
    )
    assert (nowhere.status_code, nowhere.json()["field"]) == (422, "department")
    share = http.post(
        f"/v1/customers/{customer}/shares", json={"department": "nope"}, headers=sales
    )
    assert (share.status_code, share.json()["field"]) == (422, "department")


def test_analysts_see_no_personal_field_on_any_read_path(
    api: EmbeddedApi, http: httpx.Client
) -> None:
    sales, analyst = api.token("sam", "sales", "agent"), api.token("ann", "analytics", "analyst")
    customer = post(http, "/v1/customers", {"name": "Zyxname", "email": "zyx@x.com"}, sales)
    opened = {"customer_id": customer, "channel": "email", "subject": "Zyxsubject"}
    conversation = post(http, "/v1/conversations", opened, sales)
    message = {"direction": "inbound", "author": "zyx@x.com", "content": "Zyxcontent"}
    logged = http.post(f"/v1/conversations/{conversation}/messages", json=message, headers=sales)
    correction = {"content": "Zyxcorrected", "reason": "Zyxreason"}
    message_id = logged.json()["message_id"]
    http.patch(
        f"/v1/conversations/{conversation}/messages/{message_id}", json=correction, headers=sales
    )
    task = {"customer_id": customer, "title": "Zyxtitle", "description": "Zyxdescription"}
    task_id = post(http, "/v1/tasks", task, sales)
    api.catch_up()
    reads = [
        http.get(f"/v1/conversations/{conversation}", headers=analyst),
        http.get(f"/v1/tasks/{task_id}", headers=analyst),
        http.get(f"/v1/customers/{customer}/timeline", headers=analyst),
        http.get("/v1/departments/sales/conversations", headers=analyst),
        http.get("/v1/departments/sales/tasks", headers=analyst),
        http.get("/v1/departments/sales/customers", headers=analyst),
    ]
    for read in reads:
        assert read.status_code == 200, read.text
        assert "zyx" not in read.text.lower(), read.text


def test_an_invisible_aggregate_is_indistinguishable_from_an_unknown_one(
    api: EmbeddedApi, http: httpx.Client
) -> None:
    support, sales = api.token("sue", "support", "agent"), api.token("sam", "sales", "agent")
    customer = post(http, "/v1/customers", {"name": "Private"}, support)
    opened = {"customer_id": customer, "channel": "phone", "subject": "s"}
    conversation = post(http, "/v1/conversations", opened, support)
    task = post(http, "/v1/tasks", {"customer_id": customer, "title": "t"}, support)
    for kind, hidden in (("customers", customer), ("conversations", conversation), ("tasks", task)):
        for suffix in ("", "/history"):
            seen = http.get(f"/v1/{kind}/{hidden}{suffix}", headers=sales)
            unknown = http.get(f"/v1/{kind}/{uuid.uuid4()}{suffix}", headers=sales)
            assert seen.status_code == unknown.status_code == 404, (kind, suffix)
            assert seen.json()["type"] == unknown.json()["type"]
            assert seen.json()["title"] == unknown.json()["title"]
    written = http.post(f"/v1/customers/{customer}/tags", json={"tag": "x"}, headers=sales)
    assert written.status_code == 404
    opened_by_sales = http.post("/v1/conversations", json=opened, headers=sales)
    assert opened_by_sales.status_code == 404


def test_a_refusal_whatever_the_target_tells_no_hidden_id_from_an_unknown_one(
    api: EmbeddedApi, http: httpx.Client
) -> None:
    """A command refused by the caller's role, or naming a department that is not
    configured, was refused only once its target was found: a 403 or 422 for another
    department's ids, a 404 for ids that exist nowhere, so any id could be probed."""
    support, sales = api.token("sue", "support", "agent"), api.token("sam", "sales", "agent")
    customer = post(http, "/v1/customers", {"name": "Private"}, support)
    opened = {"customer_id": customer, "channel": "phone", "subject": "s"}
    hidden = {
        "c": customer,
        "v": post(http, "/v1/conversations", opened, support),
        "t": post(http, "/v1/tasks", {"customer_id": customer, "title": "t"}, support),
    }
    unknown = {kind: str(uuid.uuid4()) for kind in hidden}
    nowhere = {"department": "nowhere"}
    writes: list[tuple[str, str, dict[str, Any] | None]] = [
        ("POST", "/v1/customers/{c}/erasure", {}),  # agents may not erase: 403
        ("POST", "/v1/tasks/{t}/assignment", {"assignee": "zoe"}),  # nor assign others
        ("POST", "/v1/tasks", {"customer_id": "{c}", "title": "t", "assignee": "zoe"}),
        ("POST", "/v1/customers/{c}/shares", nowhere),  # no such department: 422
        ("PUT", "/v1/customers/{c}/owner", nowhere),
        ("DELETE", "/v1/customers/{c}/shares/nowhere", None),
        ("POST", "/v1/conversations/{v}/handoffs", {"to_department": "nowhere"}),
        ("POST", "/v1/tasks/{t}/assignment", {"assignee": "sam"} | nowhere),
        ("POST", "/v1/tasks", {"customer_id": "{c}", "title": "t"} | nowhere),
        ("POST", "/v1/conversations", opened | {"customer_id": "{c}"} | nowhere),
    ]
    for method, url, body in writes:
        answers = []
        for ids in (hidden, unknown):
            filled = None if body is None else {k: str(v).format(**ids) for k, v in body.items()}
            answer = http.request(method, url.format(**ids), json=filled, headers=sales)
            problem = answer.json()
            answers.append((answer.status_code, problem["type"], problem.get("rule")))
        assert answers[0] == answers[1], (method, url, body, answers)
        assert answers[0][0] in (403, 422), (method, url, answers)


def test_an_idempotency_key_replays_only_to_the_principal_who_used_it(
    api: EmbeddedApi, http: httpx.Client
) -> None:
    """Another principal sending the same Idempotency-Key and body gets no stored answer
    (which would name an aggregate they may not read) and no sign that the key was used:
    theirs is another key, and their request is judged by the access model as any."""
    support, sales = api.token("sue", "support", "agent"), api.token("sam", "sales", "agent")
    key = {"Idempotency-Key": "shared-key"}
    body = {"name": "Private", "owner_department": "support"}
    first = http.post("/v1/customers", json=body, headers=support | key)
    customer = first.json()["id"]
    theirs = http.post("/v1/customers", json=body, headers=sales | key)
    assert (theirs.status_code, theirs.json()["rule"]) == (403, "agent:customer.create:own")
    tag, tag_key = {"tag": "vip"}, {"Idempotency-Key": "tag-key"}
    tagged = http.post(f"/v1/customers/{customer}/tags", json=tag, headers=support | tag_key)
    assert tagged.is_success, tagged.text
    replayed = http.post(f"/v1/customers/{customer}/tags", json=tag, headers=sales | tag_key)
    assert replayed.status_code == 404, replayed.text  # as for a customer that does not exist
    again = http.post("/v1/customers", json=body, headers=support | key)
    assert (again.status_code, again.json()) == (201, first.json())  # the first answer


def test_an_erased_customer_refuses_every_write(api: EmbeddedApi, http: httpx.Client) -> None:
    sales, admin = api.token("sam", "sales", "agent"), api.token("root", "it", "admin")
    customer = post(http, "/v1/customers", {"name": "Ada", "email": "ada@x.com"}, sales)
    opened = {"customer_id": customer, "channel": "phone", "subject": "s"}
    conversation = post(http, "/v1/conversations", opened, sales)
    task = post(http, "/v1/tasks", {"customer_id": customer, "title": "t"}, sales)
    post(http, f"/v1/customers/{customer}/erasure", {"reason": "asked"}, admin)
    head = api.runtime.app.head_position()
    message = {"direction": "inbound", "author": "ada", "content": "still here?"}
    writes = [
        http.post(f"/v1/conversations/{conversation}/messages", json=message, headers=sales),
        http.post(f"/v1/conversations/{conversation}/notes", json={"content": "n"}, headers=sales),
        http.patch(f"/v1/tasks/{task}", json={"description": "more"}, headers=sales),
        http.patch(f"/v1/customers/{customer}", json={"company": "X"}, headers=sales),
        http.post("/v1/conversations", json=opened, headers=sales),
        http.post("/v1/tasks", json={"customer_id": customer, "title": "t"}, headers=sales),
    ]
    for write in writes:
        assert write.status_code == 409, (write.url, write.text)
        assert write.json()["type"].endswith("/customer-erased"), write.text
    assert api.runtime.app.head_position() == head


def test_staff_opening_a_conversation_become_its_agent(
    api: EmbeddedApi, http: httpx.Client
) -> None:
    sales = api.token("sam", "sales", "agent")
    customer = post(http, "/v1/customers", {"name": "Ada"}, sales)
    opened = {"customer_id": customer, "channel": "phone", "subject": "s"}
    mine = post(http, "/v1/conversations", opened, sales)
    named = post(http, "/v1/conversations", opened | {"agent": "zoe"}, sales)
    assert http.get(f"/v1/conversations/{mine}", headers=sales).json()["agent"] == "sam"
    assert http.get(f"/v1/conversations/{named}", headers=sales).json()["agent"] == "zoe"


def test_a_retracted_message_is_read_only_in_the_history(
    api: EmbeddedApi, http: httpx.Client
) -> None:
    """A retraction took the text out of the timeline but not out of the conversation's
    own `GET`, which every reader of it gets (a department it is handed to included)."""
    sales, manager = api.token("sam", "sales", "agent"), api.token("max", "sales", "manager")
    customer = post(http, "/v1/customers", {"name": "Ada"}, sales)
    opened = {"customer_id": customer, "channel": "phone", "subject": "s"}
    conversation = post(http, "/v1/conversations", opened, sales)
    pasted = {"direction": "inbound", "author": "Eve Other", "content": "pasted-by-mistake"}
    logged = http.post(f"/v1/conversations/{conversation}/messages", json=pasted, headers=sales)
    message = logged.json()["message_id"]
    retracted = http.delete(
        f"/v1/conversations/{conversation}/messages/{message}?reason=wrong", headers=sales
    )
    assert retracted.status_code == 200, retracted.text
    for who in (sales, manager):
        read = http.get(f"/v1/conversations/{conversation}", headers=who)
        assert read.status_code == 200, read.text
        (entry,) = read.json()["messages"]
        assert (entry["retracted"], entry["reason"]) == (True, "wrong"), entry
        assert "pasted-by-mistake" not in read.text
        assert "Eve Other" not in read.text
    history = http.get(f"/v1/conversations/{conversation}/history", headers=manager)
    assert "pasted-by-mistake" in history.text  # who may read the history still can


def test_history_leaves_out_what_a_department_could_not_read_then(
    api: EmbeddedApi, http: httpx.Client
) -> None:
    """A manager's `/history` showed a customer's events from before it was shared with
    their department (its superseded name, e-mail and phone), which the stream's replay
    left out: both now ask `AccessModel.past_event`. Paging follows stored versions, so
    pages of left-out events still lead on to the rest."""
    sales, support = api.token("sam", "sales", "agent"), api.token("sue", "support", "manager")
    old = {"name": "Eve Before", "email": "eve@old.example", "phone": "+49 30 1111111"}
    customer = post(http, "/v1/customers", old, sales)
    new = {"name": "Eve After", "email": "eve@new.example", "phone": "+49 30 2222222"}
    assert http.patch(f"/v1/customers/{customer}", json=new, headers=sales).status_code == 200
    post(http, f"/v1/customers/{customer}/shares", {"department": "support"}, sales)
    post(http, f"/v1/customers/{customer}/tags", {"tag": "vip"}, sales)
    url, seen = f"/v1/customers/{customer}/history?limit=1", []
    while url:
        page = http.get(url, headers=support)
        assert page.status_code == 200, page.text
        assert "Before" not in page.text, page.text
        assert "old.example" not in page.text, page.text
        seen += [entry["type"] for entry in page.json()]
        url = page.links.get("next", {}).get("url", "")
    assert seen == ["CustomerShared", "CustomerTagged"]
    everything = http.get(
        f"/v1/customers/{customer}/history", headers=api.token("al", "it", "admin")
    )
    assert [e["type"] for e in everything.json()][:2] == [
        "CustomerRegistered",
        "CustomerProfileUpdated",
    ]


def test_a_task_comes_only_from_a_conversation_its_caller_may_read(
    api: EmbeddedApi, http: httpx.Client
) -> None:
    """`conversation_id` of a new task was never checked: a sales agent linked their task
    to support's conversation about another customer, or to no conversation at all. Now
    the conversation must be one they may read, with the task's customer; one they may
    not read and one that does not exist are refused alike."""
    support, sales = api.token("sue", "support", "agent"), api.token("sam", "sales", "agent")
    ada = post(http, "/v1/customers", {"name": "Ada"}, sales)
    bob = post(http, "/v1/customers", {"name": "Bob"}, support)
    opened = {"channel": "phone", "subject": "s"}
    theirs = post(http, "/v1/conversations", opened | {"customer_id": bob}, support)
    mine = post(http, "/v1/conversations", opened | {"customer_id": ada}, sales)
    head = api.runtime.app.head_position()
    refusals = []
    for conversation in (theirs, str(uuid.uuid4()), bob):
        task = {"customer_id": ada, "title": "t", "conversation_id": conversation}
        refused = http.post("/v1/tasks", json=task, headers=sales)
        assert refused.status_code == 422, refused.text
        refusals.append(refused.json()["detail"].replace(conversation, "ID"))
    assert len(set(refusals)) == 1, refusals  # nothing tells theirs from none
    other = post(http, "/v1/customers", {"name": "Cy"}, sales)
    elsewhere = {"customer_id": other, "title": "t", "conversation_id": mine}
    assert http.post("/v1/tasks", json=elsewhere, headers=sales).status_code == 422
    assert api.runtime.app.head_position() == head + 1  # Cy only
    linked = {"customer_id": ada, "title": "t", "conversation_id": mine}
    created = post(http, "/v1/tasks", linked, sales)
    assert http.get(f"/v1/tasks/{created}", headers=sales).json()["conversation_id"] == mine
