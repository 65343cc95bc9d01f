"""The permission matrix: every role x every endpoint, and what each role may read.

The routes are enumerated from the app itself, so a new route without an entry in
`MATRIX` fails `test_every_route_has_a_matrix_entry`. Each entry names the access-model
actions, the roles allowed each (for principals of the resource's department, `sales`),
what a support agent gets on sales' resources, and how to call it on fresh resources.
Denied means 403 naming the rule `role:action:denied`; allowed means neither 401, 403,
404 nor any 5xx (a domain answer such as 409 proves the access model let it through).
Without a valid token every non-public route is 401, whatever else the request sends
(a bad query or body is not looked at before the token). What the outsider gets on sales'
resources, they get on ids that exist nowhere (status, problem type, rule and field
alike). Embedded mode (SQLite), served by a real uvicorn in a thread.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.integration.api_support import EmbeddedApi, embedded_api, served
from tests.integration.permission_matrix import (
    MATRIX,
    MESSAGE,
    NEW_CUSTOMER,
    ORDER,
    ROLES,
    Case,
    Ids,
)

Client = httpx.Client


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedApi]:
    with embedded_api(tmp_path_factory.mktemp("permissions")) as embedded:
        yield embedded


@pytest.fixture(scope="module")
def client(api: EmbeddedApi) -> Iterator[Client]:
    """A real server (the event stream needs one; one app lifespan for all requests)."""
    with served(api.app) as base, httpx.Client(base_url=base, timeout=10) as http:
        yield http


@pytest.fixture(scope="module")
def tokens(api: EmbeddedApi) -> dict[str, dict[str, str]]:
    return {role: api.token(name, dept, role) for role, (name, dept) in ROLES.items()}


def _fresh(client: Client, admin: dict[str, str]) -> Ids:
    """A sales customer with an order and a tag, its conversation (one message) and task."""
    body = NEW_CUSTOMER | {"email": "n@example.com", "tags": ["gold"]}
    customer = client.post("/v1/customers", json=body, headers=admin).json()["id"]
    client.post(f"/v1/customers/{customer}/orders", json=ORDER | {"order_id": "o-1"}, headers=admin)
    opened = {"customer_id": customer, "channel": "phone", "subject": "S", "department": "sales"}
    conversation = client.post("/v1/conversations", json=opened, headers=admin).json()["id"]
    logged = client.post(f"/v1/conversations/{conversation}/messages", json=MESSAGE, headers=admin)
    task = {"customer_id": customer, "title": "T", "department": "sales", "assignee": "zoe"}
    created = client.post("/v1/tasks", json=task, headers=admin).json()["id"]
    return Ids(customer, conversation, created, logged.json()["message_id"])


def _absent() -> Ids:
    """Ids no aggregate has: what they answer an outsider, the other department's must
    answer too (an aggregate they may not read does not exist for them)."""
    return Ids(str(uuid.uuid4()), str(uuid.uuid4()), str(uuid.uuid4()), uuid.uuid4().hex)


def _kind(answer: tuple[int, dict[str, Any]]) -> tuple[Any, ...]:
    """An answer as far as it may not depend on whether the ids exist: status, problem
    type, refusing rule and field."""
    status, problem = answer
    return status, *(problem.get(name) for name in ("type", "rule", "field"))


def _routes(api: EmbeddedApi) -> set[tuple[str, str]]:
    return {
        (method, route.path)
        for route in api.app.routes
        for handler in getattr(route, "route_handlers", [])
        for method in handler.http_methods
        if method != "OPTIONS"
    }


def test_every_route_has_a_matrix_entry(api: EmbeddedApi) -> None:
    routes = _routes(api)
    assert sorted(routes - set(MATRIX)) == [], "routes without a permission-matrix entry"
    assert sorted(set(MATRIX) - routes) == [], "matrix entries for routes that do not exist"


@pytest.mark.parametrize("route", sorted(MATRIX), ids=" ".join)
def test_matrix(
    route: tuple[str, str],
    client: Client,
    tokens: dict[str, dict[str, str]],
    api: EmbeddedApi,
) -> None:
    stranger = f"sue-{abs(hash(route))}"
    outsider = api.token(stranger, "support", "agent")
    for case in MATRIX[route]:
        for role, headers in tokens.items():
            method, url, body = case.call(_fresh(client, tokens["admin"]), ROLES[role][0])
            status, problem = _request(
                client, case, method=method, url=url, body=body, headers=headers
            )
            refusal = case.refusal(role)
            if refusal is None:
                assert status not in (401, 403), (role, url, status, problem)
                assert case.public or status != 404, (role, url, status, problem)
                assert status < 500, (role, url, status, problem)
            else:
                assert status == 403, (role, url, status, problem)
                assert problem["rule"] == refusal, (role, url)
        method, url, body = case.call(_fresh(client, tokens["admin"]), stranger)
        status, problem = _request(
            client, case, method=method, url=url, body=body, headers=outsider
        )
        assert status == case.outsider, ("outsider", url, status, problem)
        method, url, body = case.call(_absent(), stranger)  # ids that exist nowhere
        unknown = _request(client, case, method=method, url=url, body=body, headers=outsider)
        assert _kind(unknown) == _kind((status, problem)), ("outsider", url, unknown, problem)
        if not case.public:
            method, url, body = case.call(_fresh(client, tokens["admin"]), "nobody")
            assert (
                _request(client, case, method=method, url=url, body=body, headers={})[0] == 401
            ), url
            for token in ({}, {"Authorization": "Bearer nobody-knows-it"}):
                # whatever else it sends: checked before any of it is parsed or read
                hostile = client.request(
                    method,
                    f"{url}{'&' if '?' in url else '?'}junk=%00",
                    content=b'{"deep": ' * 40,
                    headers={**token, "Content-Type": "text/plain", "Content-Encoding": "gzip"},
                )
                assert hostile.status_code == 401, (url, token, hostile.text)


def _request(
    client: Client,
    case: Case,
    *,
    method: str,
    url: str,
    body: dict[str, Any] | None,
    headers: dict[str, str],
) -> tuple[int, dict[str, Any]]:
    if case.stream:  # the in-process client would wait for the endless stream to end
        with client.stream(method, url, headers=headers) as response:
            if response.status_code < 400:
                return response.status_code, {}
            response.read()
            return response.status_code, response.json()
    response = client.request(method, url, json=body, headers=headers)
    problem = response.json() if "json" in response.headers.get("content-type", "") else {}
    return response.status_code, problem


# --- what each role may read ------------------------------------------------------------

MASKED = "[masked]"
CONTACT = {"email": "ada@example.com", "phone": "+442079460000"}


def _reads(client: Client, api: EmbeddedApi, headers: dict[str, str], ids: Ids) -> dict[str, Any]:
    """Every read of the customer's data, as the given principal sees it."""
    api.catch_up()
    return {
        "customer": client.get(f"/v1/customers/{ids.customer}", headers=headers).json(),
        "listed": _listed(client, headers, "sales", ids.customer),
        "message": client.get(f"/v1/conversations/{ids.conversation}", headers=headers).json()[
            "messages"
        ][0],
        "timeline": client.get(f"/v1/customers/{ids.customer}/timeline", headers=headers).json()[
            "items"
        ],
    }


def _listed(client: Client, headers: dict[str, str], department: str, customer: str) -> Any:
    """The customer's row in the department's list, walking every page (the module's
    tests create more customers than one page holds, in random id order)."""
    params = {"limit": "500"}
    while True:
        page = client.get(f"/v1/departments/{department}/customers", params=params, headers=headers)
        found = [c for c in page.json()["items"] if c["customer_id"] == customer]
        if found or page.json()["next_cursor"] is None:
            return found[0]
        params["cursor"] = page.json()["next_cursor"]


def _customer(client: Client, admin: dict[str, str], **extra: Any) -> Ids:
    ids = _fresh(client, admin)
    client.patch(f"/v1/customers/{ids.customer}", json=CONTACT, headers=admin)
    for key, value in extra.items():
        client.put(f"/v1/customers/{ids.customer}/{key}", json=value, headers=admin)
    return ids


def test_analysts_never_see_contacts_or_message_contents(
    client: Client, api: EmbeddedApi, tokens: dict[str, dict[str, str]]
) -> None:
    ids = _customer(client, tokens["admin"])
    seen = _reads(client, api, tokens["analyst"], ids)
    for view in (seen["customer"], seen["listed"]):
        assert (view["email"], view["phone"]) == (MASKED, MASKED)
    assert seen["message"]["content"] == MASKED
    paged = client.get(f"/v1/conversations/{ids.conversation}/messages", headers=tokens["analyst"])
    assert {message["content"] for message in paged.json()["messages"]} == {MASKED}
    assert seen["timeline"]
    assert {entry["content"] for entry in seen["timeline"] if entry["content"]} == {MASKED}
    history = client.get(f"/v1/customers/{ids.customer}/history", headers=tokens["auditor"])
    updated = [h for h in history.json() if h["type"] == "CustomerProfileUpdated"]
    assert updated[0]["data"]["email"] == CONTACT["email"]  # auditors read everything


@pytest.mark.parametrize(("consent", "email"), [(True, CONTACT["email"]), (False, MASKED)])
def test_marketing_sees_an_email_only_with_consent(
    client: Client, api: EmbeddedApi, tokens: dict[str, dict[str, str]], consent: bool, email: str
) -> None:
    marketing = api.token(f"mia-{consent}", "marketing", "agent")
    ids = _customer(client, tokens["admin"], consents={"consents": {"email_marketing": consent}})
    client.post(
        f"/v1/customers/{ids.customer}/shares",
        json={"department": "marketing"},
        headers=tokens["admin"],
    )
    api.catch_up()
    customer = client.get(f"/v1/customers/{ids.customer}", headers=marketing).json()
    row = _listed(client, marketing, "marketing", ids.customer)
    assert customer["email"] == row["email"] == email
    assert customer["phone"] == row["phone"] == MASKED  # never marketing's, consent or not
    assert customer["name"] == row["name"] != MASKED


def test_other_roles_see_contacts_and_contents(
    client: Client, api: EmbeddedApi, tokens: dict[str, dict[str, str]]
) -> None:
    ids = _customer(client, tokens["admin"])
    for role in ("agent", "manager", "auditor", "service", "admin"):
        seen = _reads(client, api, tokens[role], ids)
        assert seen["customer"]["email"] == seen["listed"]["email"] == CONTACT["email"], role
        assert seen["message"]["content"] == MESSAGE["content"], role


def test_auditor_reads_history_and_as_of_but_changes_nothing(
    client: Client, tokens: dict[str, dict[str, str]]
) -> None:
    ids = _customer(client, tokens["admin"])
    auditor = tokens["auditor"]
    history = client.get(f"/v1/customers/{ids.customer}/history", headers=auditor).json()
    first = history[0]["occurred_at"]
    past = client.get(f"/v1/customers/{ids.customer}", params={"as_of": first}, headers=auditor)
    assert past.status_code == 200
    assert past.json()["email"] == "n@example.com"  # before the update to CONTACT
    head = _head(client)
    refused = client.post(f"/v1/customers/{ids.customer}/tags", json={"tag": "x"}, headers=auditor)
    assert refused.json()["rule"] == "auditor:customer.update:denied"
    assert _head(client) == head


def _head(client: Client) -> float:
    metrics = client.get("/metrics").text
    head = "crm_event_store_head_position"
    line = next(text for text in metrics.splitlines() if text.startswith(head))
    return float(line.split()[-1])
