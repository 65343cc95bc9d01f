"""The HTTP API on the embedded (SQLite) store: commands, concurrency, idempotency,
authentication and authorisation, audit reads."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest
from litestar.testing import TestClient

from services.api import create_app
from services.api.docs_page import SWAGGER_SHA384
from services.bootstrap import Runtime, bootstrap
from services.principals import Principals
from services.settings import load_settings
from tests.e2e.processes import eventually
from tests.integration.api_support import embedded_api, send_raw, served

Client = TestClient[Any]


@pytest.fixture
def runtime(tmp_path: Path) -> Iterator[Runtime]:
    env = {"CRM_DATA_DIR": str(tmp_path), "CRM_READ_WAIT_SECONDS": "0.1"}
    rt = bootstrap(load_settings(env))
    yield rt
    rt.close()


@pytest.fixture
def client(runtime: Runtime) -> Iterator[Client]:
    with TestClient(app=create_app(runtime)) as test_client:
        yield test_client


def token(client: Client, name: str, department: str, role: str) -> dict[str, str]:
    principals: Principals = client.app.state.services.principals
    return {"Authorization": f"Bearer {principals.add(name, department, role)}"}


@pytest.fixture
def sales(client: Client) -> dict[str, str]:
    return token(client, "sam", "sales", "agent")


def register(client: Client, headers: dict[str, str], **extra: Any) -> str:
    body = {"name": "Ada Lovelace", "email": "ada@example.com", "phone": "+44 20 7946 0000"}
    response = client.post("/v1/customers", json=body | extra, headers=headers)
    assert response.status_code == 201, response.text
    assert response.headers["etag"] == '"1"'
    return str(response.json()["id"])


def test_register_update_and_read_customer(client: Client, sales: dict[str, str]) -> None:
    customer_id = register(client, sales)
    response = client.patch(f"/v1/customers/{customer_id}", json={"company": "ACME"}, headers=sales)
    assert response.status_code == 200
    answer = response.json()
    assert answer["version"] == 2
    assert answer["position"] == 2
    read = client.get(f"/v1/customers/{customer_id}?min_position=2", headers=sales).json()
    assert read["company"] == "ACME"
    assert read["owner_department"] == "sales"


def test_if_match_stale_version_is_409(client: Client, sales: dict[str, str]) -> None:
    customer_id = register(client, sales)
    url = f"/v1/customers/{customer_id}/tags"
    ok = client.post(url, json={"tag": "vip"}, headers=sales | {"If-Match": '"1"'})
    assert ok.status_code == 200
    assert ok.headers["etag"] == '"2"'
    stale = client.post(url, json={"tag": "gold"}, headers=sales | {"If-Match": '"1"'})
    assert stale.status_code == 409
    problem = stale.json()
    assert stale.headers["content-type"].startswith("application/problem+json")
    assert problem["type"].endswith("/version-conflict")
    assert problem["actual_version"] == 2


def test_idempotency_key_gives_first_answer_without_second_event(
    client: Client, sales: dict[str, str]
) -> None:
    headers = sales | {"Idempotency-Key": "order-42"}
    body = {"name": "Grace Hopper"}
    first = client.post("/v1/customers", json=body, headers=headers)
    again = client.post("/v1/customers", json=body, headers=headers)
    assert first.status_code == again.status_code == 201
    assert first.json() == again.json()
    assert client.app.state.services.app.head_position() == 1
    other = client.post("/v1/customers", json={"name": "Someone Else"}, headers=headers)
    assert other.status_code == 409


def test_unauthenticated_is_401_problem(client: Client) -> None:
    for headers in ({}, {"Authorization": "Bearer nope"}):
        response = client.get("/v1/tasks/00000000-0000-0000-0000-000000000000", headers=headers)
        assert response.status_code == 401
        assert response.json()["type"].endswith("/unauthenticated")


JSON = ("Content-Type", "application/json")
PROBLEM = "application/problem+json"

TOKEN_ROUTES = (
    ("GET", "/v1/ping"),
    ("POST", "/v1/customers"),
    ("GET", "/v1/events/stream?department=sales"),
    ("GET", "/v1/audit/checkpoints"),
    ("GET", f"/v1/audit/access?customer={uuid.UUID(int=0)}"),
)
"""A route of each kind that reads a token: a command, reads, the stream, the audit's."""


def credential_pairs(valid: str) -> Iterator[tuple[str, str]]:
    """Two credentials, a valid one first or second: neither may be used."""
    for other in ("Bearer nope", valid, "Basic eDp5"):
        yield from ((valid, other), (other, valid))


def assert_ambiguous(status: int, body: bytes, what: object) -> None:
    assert status == 400, (what, body)
    assert b"one Authorization header" in body, (what, body)


@pytest.mark.parametrize(("method", "url"), TOKEN_ROUTES)
def test_two_authorization_headers_are_a_400_on_a_real_server(
    method: str, url: str, tmp_path: Path
) -> None:
    """Two header lines, as a client sends them: uvicorn passes both on."""
    with embedded_api(tmp_path) as api, served(api.app) as base:
        valid = api.token("ada", "sales", "auditor")["Authorization"]
        for pair in credential_pairs(valid):
            headers = [("Authorization", value) for value in pair]
            sent = send_raw(base, method, url, [*headers, JSON], b'{"name": "Ada"}')
            assert_ambiguous(sent.status, sent.body, pair)
            assert sent.content_type.startswith("application/problem+json")
        assert api.runtime.app.head_position() == 0


@pytest.mark.parametrize(("method", "url"), TOKEN_ROUTES)
def test_two_credentials_folded_into_one_header_are_a_400(
    client: Client, method: str, url: str
) -> None:
    """The same two, folded into one line (`Bearer a, Bearer b`), as a proxy or a client
    library may (httpx does): a bearer token never holds a comma."""
    valid = token(client, "ada", "sales", "auditor")["Authorization"]
    for pair in credential_pairs(valid):
        headers = [("Authorization", value) for value in pair]
        sent = client.request(method, url, headers=headers, json={"name": "Ada"})
        assert_ambiguous(sent.status_code, sent.content, pair)
    assert client.app.state.services.app.head_position() == 0


def test_two_if_match_or_idempotency_key_headers_are_a_400_on_a_real_server(
    tmp_path: Path,
) -> None:
    """The first line was used: `If-Match: "1"` and `If-Match: "7"` changed the customer
    (200), two keys created one (201). A command is conditional on one version and
    retried under one key: two of either are ambiguous, in either order."""
    with embedded_api(tmp_path) as api, served(api.app) as base:
        [auth] = api.token("sam", "sales", "agent").items()
        created = send_raw(base, "POST", "/v1/customers", [auth, JSON], b'{"name": "Ada"}')
        tags = f"/v1/customers/{json.loads(created.body)['id']}/tags"
        for pair in (['"1"', '"7"'], ['"7"', '"1"'], ['"1"', '"1"']):
            headers = [auth, JSON, *(("If-Match", etag) for etag in pair)]
            sent = send_raw(base, "POST", tags, headers, b'{"tag": "vip"}')
            assert (sent.status, sent.content_type) == (400, PROBLEM), (pair, sent)
            assert b"If-Match takes one ETag" in sent.body, sent.body
        for keys in (["a", "b"], ["a", "a"]):
            headers = [auth, JSON, *(("Idempotency-Key", key) for key in keys)]
            sent = send_raw(base, "POST", "/v1/customers", headers, b'{"name": "Bob"}')
            assert (sent.status, sent.content_type) == (400, PROBLEM), (keys, sent)
            assert b"one Idempotency-Key header" in sent.body, sent.body
        for folded in ("a, b", "a,a"):  # two lines joined by a proxy, or a key with a comma
            headers = [auth, JSON, ("Idempotency-Key", folded)]
            sent = send_raw(base, "POST", "/v1/customers", headers, b'{"name": "Bob"}')
            assert (sent.status, sent.content_type) == (400, PROBLEM), (folded, sent)
            assert json.loads(sent.body)["reason"] == "bad-idempotency-key", sent.body
        assert api.runtime.app.head_position() == 1


@pytest.mark.parametrize("listed", ['"1", "7"', '"7","1"', '"1", "1"', '*, "1"', 'W/"1", "1"'])
def test_a_list_of_entity_tags_in_if_match_is_a_400_naming_it(
    client: Client, sales: dict[str, str], listed: str
) -> None:
    """RFC 9110 lets If-Match list entity tags, any of which may match; a command here is
    conditional on one version, so a list (one line, or lines folded by a proxy) says so
    rather than that the ETag is malformed."""
    url = f"/v1/customers/{register(client, sales)}/tags"
    sent = client.post(url, json={"tag": "vip"}, headers=sales | {"If-Match": listed})
    assert sent.status_code == 400, sent.text
    assert sent.json()["detail"].startswith("If-Match takes one ETag"), sent.text
    assert client.app.state.services.app.head_position() == 1


def test_another_departments_customer_is_a_404_like_an_unknown_id(
    client: Client, sales: dict[str, str]
) -> None:
    customer_id = register(client, sales)
    support = token(client, "sue", "support", "agent")
    response = client.patch(f"/v1/customers/{customer_id}", json={"company": "X"}, headers=support)
    unknown = client.patch(f"/v1/customers/{uuid.uuid4()}", json={"company": "X"}, headers=support)
    assert (response.status_code, unknown.status_code) == (404, 404)
    assert response.json()["type"] == unknown.json()["type"]
    client.post(
        f"/v1/customers/{customer_id}/shares", json={"department": "support"}, headers=sales
    )
    allowed = client.patch(f"/v1/customers/{customer_id}", json={"company": "X"}, headers=support)
    assert allowed.status_code == 200


def test_validation_failure_is_422_naming_the_field(client: Client, sales: dict[str, str]) -> None:
    response = client.post("/v1/customers", json={"name": "A", "email": "nope"}, headers=sales)
    assert response.status_code == 422
    assert response.json()["field"] == "email"


def test_a_schema_error_names_the_parameter_not_the_others_values(
    client: Client, sales: dict[str, str]
) -> None:
    """The framework's detail repeated the URL with its query string: a search by e-mail
    with a malformed limit answered the e-mail back in the problem document. (A limit
    not written as a whole number is refused before the framework reads it.)"""
    sent = client.get("/v1/customers?email=ada.lovelace@example.com&limit=many", headers=sales)
    assert sent.status_code == 400
    assert (sent.json()["field"], sent.json()["detail"]) == (
        "limit",
        "query parameter 'limit' must be a whole number in ASCII digits (no sign, leading "
        "zero, space, exponent or underscore), not 'many'",
    )
    assert "lovelace" not in sent.text
    beyond = client.get("/v1/customers?email=ada.lovelace@example.com&limit=501", headers=sales)
    assert (beyond.json()["field"], beyond.json()["detail"]) == (
        "limit",
        "Validation failed for query limit",
    )
    assert "lovelace" not in beyond.text


def test_conversation_flow_and_analyst_masking(client: Client, sales: dict[str, str]) -> None:
    customer_id = register(client, sales)
    opened = client.post(
        "/v1/conversations",
        json={"customer_id": customer_id, "channel": "email", "subject": "Quote"},
        headers=sales,
    ).json()
    url = f"/v1/conversations/{opened['id']}"
    message = {"direction": "inbound", "author": "Ada", "content": "Hello"}
    logged = client.post(url + "/messages", json=message, headers=sales)
    assert logged.status_code == 201
    assert logged.json()["message_id"]
    analyst = token(client, "ann", "analytics", "analyst")
    seen = client.get(url, headers=analyst).json()
    assert seen["messages"][0]["content"] == "[masked]"
    customer = client.get(f"/v1/customers/{customer_id}", headers=analyst).json()
    assert customer["email"] == "[masked]"
    assert customer["phone"] == "[masked]"
    assert client.get(url, headers=sales).json()["messages"][0]["content"] == "Hello"


def test_auditor_history_and_as_of(client: Client, sales: dict[str, str]) -> None:
    customer_id = register(client, sales)
    auditor = token(client, "aud", "audit", "auditor")
    first = client.get(f"/v1/customers/{customer_id}/history", headers=auditor).json()
    instant = first[0]["occurred_at"]
    client.patch(f"/v1/customers/{customer_id}", json={"company": "Later"}, headers=sales)
    history = client.get(f"/v1/customers/{customer_id}/history", headers=auditor).json()
    assert [h["type"] for h in history] == ["CustomerRegistered", "CustomerProfileUpdated"]
    past = client.get(f"/v1/customers/{customer_id}", params={"as_of": instant}, headers=auditor)
    assert past.status_code == 200
    assert past.json()["company"] is None
    assert client.post("/v1/customers", json={"name": "X"}, headers=auditor).status_code == 403
    refused = client.get(f"/v1/customers/{customer_id}", params={"as_of": instant}, headers=sales)
    assert refused.status_code == 403


def test_erasure_needs_admin_and_erases(client: Client, sales: dict[str, str]) -> None:
    customer_id = register(client, sales)
    url = f"/v1/customers/{customer_id}/erasure"
    assert client.post(url, json={}, headers=sales).status_code == 403
    admin = token(client, "root", "it", "admin")
    assert client.post(url, json={"reason": "GDPR request"}, headers=admin).status_code == 200
    history = client.get(f"/v1/customers/{customer_id}/history", headers=admin).json()
    assert history[0]["data"]["email"] == "[erased]"


def test_a_min_position_beyond_the_head_is_refused_at_once(
    client: Client, sales: dict[str, str]
) -> None:
    customer_id = register(client, sales)
    response = client.get(f"/v1/customers/{customer_id}?min_position=99", headers=sales)
    assert response.status_code == 400
    assert "head" in response.json()["detail"]
    reached = client.get(f"/v1/customers/{customer_id}?min_position=1", headers=sales)
    assert reached.status_code == 200


def test_read_models_not_wired_answer_501(client: Client, sales: dict[str, str]) -> None:
    response = client.get("/v1/departments/sales/customers", headers=sales)
    assert response.status_code == 501
    assert response.json()["type"].endswith("/read-model-unavailable")


def test_task_lifecycle_with_evaluation(client: Client, sales: dict[str, str]) -> None:
    customer_id = register(client, sales)
    created = client.post(
        "/v1/tasks", json={"customer_id": customer_id, "title": "Call back"}, headers=sales
    ).json()
    url = f"/v1/tasks/{created['id']}"
    steps: list[tuple[str, dict[str, Any]]] = [
        ("/assignment", {"assignee": "sam"}),
        ("/start", {}),
        ("/progress", {"note": "rang", "percent": 50}),
        ("/complete", {"resolution": "done"}),
    ]
    for path, body in steps:
        assert client.post(url + path, json=body, headers=sales).status_code == 200, path
    own = client.post(url + "/evaluation", json={"score": 5}, headers=sales)
    assert own.status_code == 403
    assert own.json()["type"].endswith("/not-allowed")
    manager = token(client, "max", "sales", "manager")
    assert client.post(url + "/evaluation", json={"score": 4}, headers=manager).status_code == 200
    assert client.get(url, headers=sales).json()["evaluation_score"] == 4


def test_ops_endpoints(client: Client) -> None:
    assert client.get("/healthz").json() == {"status": "ok"}
    assert client.get("/readyz").status_code == 200
    assert "crm_http_requests" in client.get("/metrics").text


def test_metrics_show_what_the_caches_hold(client: Client, sales: dict[str, str]) -> None:
    def held() -> dict[str, float]:
        lines = client.get("/metrics").text.splitlines()
        names = ("crm_commands_cache_bytes", "crm_kept_aggregates_bytes")
        return {n: float(line.split()[-1]) for line in lines for n in names if line.startswith(n)}

    assert held() == {"crm_commands_cache_bytes": 0.0, "crm_kept_aggregates_bytes": 0.0}
    customer_id = register(client, sales)  # the commands' cache holds it
    assert client.get(f"/v1/customers/{customer_id}", headers=sales).status_code == 200  # kept
    eventually(  # a rendering is answered again for a second (`Metrics.exposition`)
        lambda: all(bytes_held > 0 for bytes_held in held().values()) or None,
        within=10,
        what="the caches' bytes in /metrics",
    )


def test_crm_cache_mb_bounds_what_the_api_keeps_of_aggregates(tmp_path: Path) -> None:
    env = {"CRM_DATA_DIR": str(tmp_path), "CRM_CACHE_MB": "0"}
    runtime = bootstrap(load_settings(env))
    try:
        with TestClient(app=create_app(runtime)) as client:
            sales = token(client, "sam", "sales", "agent")
            customer_id = register(client, sales)
            assert client.get(f"/v1/customers/{customer_id}", headers=sales).status_code == 200
            services = client.app.state.services
            assert (len(services.commands.cache), len(services.current._kept)) == (0, 0)
    finally:
        runtime.close()
    assert "/v1/customers" in client.get("/openapi.json").json()["paths"]


def test_no_route_resolves_its_dependencies_in_a_task_group(client: Client) -> None:
    """Litestar resolves two dependencies of one level concurrently, in an anyio task
    group: ~200 us of CPU a request (a statistics read took a quarter more with its time
    range as a second dependency; history reads, with their page)."""
    concurrent = set()
    for route in client.app.routes:
        for handler in getattr(route, "route_handlers", ()):
            model = handler.create_kwargs_model(path_parameters=route.path_parameters)
            batches = model.dependency_batches
            if any(len(batch) > 1 for batch in batches):
                concurrent.add(route.path.partition("/{")[0])
    assert concurrent == set()


class _External(HTMLParser):
    """The attributes of every tag loading a file from another origin."""

    def __init__(self) -> None:
        super().__init__()
        self.loaded: list[dict[str, str | None]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        found = dict(attrs)
        if str(found.get("src") or found.get("href") or "").startswith(("http:", "https:", "//")):
            self.loaded.append(found)


def test_the_docs_page_pins_every_file_it_loads_from_another_origin(client: Client) -> None:
    """Swagger UI comes from a CDN and runs on the API's origin, where a bearer token
    may be pasted into it: a changed file must be refused by the browser (Subresource
    Integrity), not run. The hashes are of the npm package (`services.api.docs_page`)."""
    page = client.get("/docs")
    assert page.status_code == 200, page.text
    external = _External()
    external.feed(page.text)
    files = {str(tag.get("src") or tag.get("href")).rpartition("/")[2] for tag in external.loaded}
    assert files == set(SWAGGER_SHA384)
    for tag in external.loaded:
        name = str(tag.get("src") or tag.get("href")).rpartition("/")[2]
        assert tag.get("integrity") == f"sha384-{SWAGGER_SHA384[name]}", tag
        assert "crossorigin" in tag, tag  # a CORS request, which the check needs
        assert tag["crossorigin"] in (None, "anonymous"), tag  # None: bare, anonymous


def test_the_departments_are_listed_as_configured(tmp_path: Path) -> None:
    """For clients offering a choice (the console's pickers knew only the default three,
    so a deployment's `legal` could not be chosen, nor its board shown)."""
    settings = {"CRM_DEPARTMENTS": "support,legal,sales"}
    with embedded_api(tmp_path, settings=settings) as api, TestClient(app=api.app) as client:
        listed = client.get("/v1/departments", headers=api.token("lea", "legal", "agent"))
        assert listed.status_code == 200, listed.text
        assert listed.json() == {"departments": ["support", "legal", "sales"]}
        assert client.get("/v1/departments").status_code == 401
