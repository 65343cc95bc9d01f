"""The past is judged then *and* now: history, `as_of` and a replayed event stream show
an event as the access model would both as of that event and today.

A marketing manager reads a customer's e-mail only while the customer consents to e-mail
marketing. So an e-mail stored before the consent was given stays masked in history, and
one stored while it was given is masked once it is withdrawn, in history and in a replay
of the stream alike; a live stream shows it as it happens. A replay leaves out the events
of a customer the caller's department may no longer read. Embedded mode, a real server;
the streams also with no aggregate kept between events (`CRM_STREAMS_CACHE_MB=0`: each
state read again from the store at that event's version, and now).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from domain.base import MASKED
from tests.integration.api_support import EmbeddedApi, embedded_api, served
from tests.integration.stream_support import Stream

Client = httpx.Client
BEFORE, DURING, AFTER = "before@example.com", "during@example.com", "after@example.com"


@pytest.fixture(params=["kept", "none-kept"])
def api(tmp_path: Any, request: pytest.FixtureRequest) -> Iterator[EmbeddedApi]:
    settings = {"CRM_STREAMS_CACHE_MB": "0"} if request.param == "none-kept" else {}
    with embedded_api(tmp_path, settings=settings) as embedded:
        yield embedded


@pytest.fixture
def client(api: EmbeddedApi) -> Iterator[Client]:
    with served(api.app) as base, httpx.Client(base_url=base, timeout=10) as http:
        yield http


@pytest.fixture
def admin(api: EmbeddedApi) -> dict[str, str]:
    return api.token("root", "it", "admin")


@pytest.fixture
def manager(api: EmbeddedApi) -> dict[str, str]:
    """A marketing manager: reads history, replays the stream, e-mails with consent."""
    return api.token("mia", "marketing", "manager")


def _customer(client: Client, admin: dict[str, str]) -> str:
    """A marketing customer whose e-mail changed during its consent and after it, then
    tagged `end` (the streams' last event)."""
    body = {"name": "Ada", "email": BEFORE, "owner_department": "marketing"}
    customer: str = client.post("/v1/customers", json=body, headers=admin).json()["id"]
    for email, consent in ((DURING, True), (AFTER, False)):
        _consent(client, admin, customer, consent)
        updated = client.patch(f"/v1/customers/{customer}", json={"email": email}, headers=admin)
        assert updated.is_success, updated.text
    _tag(client, admin, customer, "end")
    return customer


def _consent(client: Client, admin: dict[str, str], customer: str, granted: bool) -> None:
    consents = {"consents": {"email_marketing": granted}}
    changed = client.put(f"/v1/customers/{customer}/consents", json=consents, headers=admin)
    assert changed.is_success, changed.text


def _tag(client: Client, admin: dict[str, str], customer: str, tag: str) -> None:
    tagged = client.post(f"/v1/customers/{customer}/tags", json={"tag": tag}, headers=admin)
    assert tagged.is_success, tagged.text


def _emails(documents: list[dict[str, Any]]) -> list[str]:
    return [data["email"] for data in documents if "email" in data]


def _until_end(stream: Stream) -> list[dict[str, Any]]:
    try:
        events = stream.until(lambda event: event[2].get("tag") == "end", "the tag `end`")
    finally:
        stream.close()
    return [data for _, _, data in events]


def _replay(client: Client, headers: dict[str, str]) -> list[dict[str, Any]]:
    return _until_end(Stream(str(client.base_url), "/v1/events/stream?after=0", headers))


def _history(client: Client, headers: dict[str, str], customer: str) -> list[dict[str, Any]]:
    history = client.get(f"/v1/customers/{customer}/history", headers=headers)
    assert history.status_code == 200, history.text
    return [entry["data"] for entry in history.json()]


def test_an_email_of_the_past_shows_only_with_consent_then_and_now(
    client: Client, api: EmbeddedApi, admin: dict[str, str], manager: dict[str, str]
) -> None:
    live = Stream(str(client.base_url), "/v1/events/stream", manager)
    customer = _customer(client, admin)

    assert _emails(_until_end(live)) == [MASKED, DURING, MASKED]  # each as it happened
    assert _emails(_history(client, manager, customer)) == [MASKED, MASKED, MASKED]
    assert _emails(_replay(client, manager)) == [MASKED, MASKED, MASKED]  # withdrawn now
    auditor = api.token("aud", "audit", "auditor")  # reads every e-mail, then and now
    assert _emails(_history(client, auditor, customer)) == [BEFORE, DURING, AFTER]
    assert _emails(_replay(client, auditor)) == [BEFORE, DURING, AFTER]


def test_an_email_stored_without_consent_stays_masked_once_consent_is_given(
    client: Client, api: EmbeddedApi, admin: dict[str, str], manager: dict[str, str]
) -> None:
    customer = _customer(client, admin)
    _consent(client, admin, customer, True)

    assert client.get(f"/v1/customers/{customer}", headers=manager).json()["email"] == AFTER
    assert _emails(_history(client, manager, customer)) == [MASKED, DURING, MASKED]
    assert _emails(_replay(client, manager)) == [MASKED, DURING, MASKED]


def test_a_replay_leaves_out_a_customer_no_longer_shared_with_the_caller(
    client: Client, api: EmbeddedApi, admin: dict[str, str], manager: dict[str, str]
) -> None:
    live = Stream(str(client.base_url), "/v1/events/stream", manager)
    kept, left = (
        client.post(
            "/v1/customers",
            json={"name": name, "email": f"{name}@example.com", "owner_department": "sales"},
            headers=admin,
        ).json()["id"]
        for name in ("kept", "left")
    )
    for customer in (kept, left):
        shares = f"/v1/customers/{customer}/shares"
        assert client.post(shares, json={"department": "marketing"}, headers=admin).is_success
        _tag(client, admin, customer, "vip")
    assert client.delete(f"/v1/customers/{left}/shares/marketing", headers=admin).is_success
    _tag(client, admin, kept, "end")

    shared = [("CustomerShared", kept), ("CustomerTagged", kept)]
    the_end = [("CustomerTagged", kept)]
    lived = [(data["type"], data["originator_id"]) for data in _until_end(live)]
    assert lived == [*shared, ("CustomerShared", left), ("CustomerTagged", left), *the_end]
    replayed = [(data["type"], data["originator_id"]) for data in _replay(client, manager)]
    assert replayed == [*shared, *the_end]
    assert client.get(f"/v1/customers/{left}", headers=manager).status_code == 404
