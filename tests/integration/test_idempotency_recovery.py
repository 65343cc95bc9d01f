"""Idempotency-Key across crashes, through the HTTP API on SQLite and on PostgreSQL.

A process that died with a key in flight is played as it would have left things: the key
reserved through the store exactly as `CommandCall.run` reserves it, and, when it got
that far, the command committed by its own `CommandService` under that reservation; then
nothing more (no answer stored, no release). The API's idempotency clock is moved past
the lease instead of sleeping.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import msgspec
import pytest
from litestar.testing import TestClient

from services import conversation_commands as vc
from services import customer_commands as cc
from services.access.rules import Principal
from services.command_base import Change, Creation
from services.commands import Caller, CommandResult, CommandService
from services.group_commit import DirectCommitter
from services.idempotency import Idempotency, Reservation, created_id
from tests.fake_clock import Clock
from tests.integration.api_support import EmbeddedApi, embedded_api

Client = TestClient[Any]
Headers = dict[str, str]
KEY = "retry-7"


@pytest.fixture(params=["sqlite", "postgres"])
def api(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[EmbeddedApi]:
    url = None if request.param == "sqlite" else request.getfixturevalue("pg_url")
    with embedded_api(tmp_path, database_url=url) as embedded:
        yield embedded


@pytest.fixture
def client(api: EmbeddedApi) -> Iterator[Client]:
    with TestClient(api.app) as test_client:
        yield test_client


@pytest.fixture
def keys(api: EmbeddedApi) -> Idempotency:
    keys: Idempotency = api.app.state.services.idempotency
    keys.clock = Clock(keys.clock())
    return keys


def later(keys: Idempotency, seconds: float) -> None:
    assert isinstance(keys.clock, Clock)
    keys.clock.now += seconds


class DeadProcess:
    """What a process killed during a keyed command left behind."""

    def __init__(self, api: EmbeddedApi, headers: Headers) -> None:
        self.api = api
        services = api.app.state.services
        principal = services.principals.authenticate(headers["Authorization"].split()[1])
        assert isinstance(principal, Principal)
        self.principal, self.keys = principal, services.idempotency

    def reserved(self, method: str, path: str, command: object, key: str = KEY) -> Reservation:
        request = self.keys.fingerprint(method, path, msgspec.json.encode(command))
        held = self.keys.begin(self.principal.name, key, request)
        assert isinstance(held, Reservation)
        return held

    def committed(
        self,
        held: Reservation,
        command: Creation | Change[Any],
        target: uuid.UUID | None = None,
        *,
        as_sent: bool = False,
    ) -> CommandResult:
        """`as_sent`: as a release before digests did, the events carry the key as sent."""
        runtime = self.api.runtime
        service = CommandService(
            runtime.app, DirectCommitter(runtime.app), runtime.keyring, access=runtime.access
        )
        caller = Caller(principal=self.principal, correlation_id="died").keyed(held)
        if as_sent:
            caller = msgspec.structs.replace(caller, event_key=held.key)
        if target is None:
            assert isinstance(command, Creation)
            return asyncio.run(service.create(caller, command))
        assert isinstance(command, Change)
        return asyncio.run(service.change(caller, target, command))


GRACE = {"name": "Grace Hopper"}


def dead_registration(api: EmbeddedApi, headers: Headers) -> Reservation:
    """A registration of Grace whose process died before it committed."""
    command = msgspec.convert(GRACE, cc.RegisterCustomer)
    return DeadProcess(api, headers).reserved("POST", "/v1/customers", command)


def keyed_registration(client: Client, headers: Headers, body: dict[str, str] = GRACE) -> Any:
    return client.post("/v1/customers", json=body, headers=headers | {"Idempotency-Key": KEY})


def head(api: EmbeddedApi) -> int:
    return api.runtime.app.head_position()


def as_json(result: CommandResult) -> dict[str, Any]:
    document: dict[str, Any] = msgspec.to_builtins(result)
    return document


def register(client: Client, headers: Headers, name: str = "Grace Hopper") -> str:
    response = client.post("/v1/customers", json={"name": name}, headers=headers)
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


def test_a_dead_creation_that_committed_answers_its_result_without_a_second_event(
    api: EmbeddedApi, client: Client, keys: Idempotency
) -> None:
    sales = api.token("sam", "sales", "agent")
    held = dead_registration(api, sales)
    first = DeadProcess(api, sales).committed(held, msgspec.convert(GRACE, cc.RegisterCustomer))
    assert first.id == created_id(held.reservation, "sam", KEY)
    events = head(api)
    later(keys, keys.lease_seconds + 1)
    retry = keyed_registration(client, sales)
    assert (retry.status_code, retry.json()) == (201, as_json(first))
    assert retry.headers["ETag"] == f'"{first.version}"'
    assert keyed_registration(client, sales).json() == as_json(first)
    assert head(api) == events


def test_a_dead_attempts_events_carry_the_keys_digest_not_the_key(
    api: EmbeddedApi, client: Client, keys: Idempotency
) -> None:
    sales = api.token("sam", "sales", "agent")
    held = dead_registration(api, sales)
    first = DeadProcess(api, sales).committed(held, msgspec.convert(GRACE, cc.RegisterCustomer))
    (event,) = api.runtime.app.history(first.id)
    assert event.idempotency_key == held.event_key == keys.event_key("sam", KEY)
    assert KEY not in event.idempotency_key


@pytest.mark.parametrize("digests", [True, False], ids=["digest", "key-as-sent"])
def test_a_dead_attempt_of_either_release_that_committed_answers_without_a_second_event(
    api: EmbeddedApi, client: Client, keys: Idempotency, digests: bool
) -> None:
    """Events stored by a release before digests carry the key as sent; the retry of an
    attempt in flight across the upgrade (the new release) still finds them."""
    sales = api.token("sam", "sales", "agent")
    customer = register(client, sales)
    dead = DeadProcess(api, sales)
    held = dead_registration(api, sales)
    made = dead.committed(held, msgspec.convert(GRACE, cc.RegisterCustomer), as_sent=not digests)
    path, body = f"/v1/customers/{customer}", {"company": "Navy"}
    command = msgspec.convert(body, cc.UpdateProfile)
    changed = dead.committed(dead.reserved("PATCH", path, command, "retry-8"), command,
                             uuid.UUID(customer), as_sent=not digests)  # fmt: skip
    stored = [api.runtime.app.history(made.id)[-1], api.runtime.app.history(changed.id)[-1]]
    assert [e.idempotency_key for e in stored] == (
        [keys.event_key("sam", KEY), keys.event_key("sam", "retry-8")] if digests
        else [KEY, "retry-8"]
    )  # fmt: skip
    events = head(api)
    later(keys, keys.lease_seconds + 1)
    retried = keyed_registration(client, sales)
    assert (retried.status_code, retried.json()) == (201, as_json(made))
    again = client.patch(path, json=body, headers=sales | {"Idempotency-Key": "retry-8"})
    assert (again.status_code, again.json()) == (200, as_json(changed))
    assert head(api) == events


def test_a_dead_message_that_committed_answers_its_message_id(
    api: EmbeddedApi, client: Client, keys: Idempotency
) -> None:
    support = api.token("sue", "support", "agent")
    customer = register(client, support)
    opened = {"customer_id": customer, "channel": "email", "subject": "Hi"}
    conversation = client.post("/v1/conversations", json=opened, headers=support).json()["id"]
    body = {"direction": "inbound", "author": "Grace", "content": "hello"}
    path = f"/v1/conversations/{conversation}/messages"
    command = msgspec.convert(body, vc.LogMessage)
    dead = DeadProcess(api, support)
    first = dead.committed(dead.reserved("POST", path, command), command, uuid.UUID(conversation))
    assert isinstance(first.message_id, str)
    events = head(api)
    later(keys, keys.lease_seconds + 1)
    retry = client.post(path, json=body, headers=support | {"Idempotency-Key": KEY})
    assert (retry.status_code, retry.json()) == (201, as_json(first))
    assert head(api) == events


def test_a_dead_creation_that_did_not_commit_runs_exactly_once(
    api: EmbeddedApi, client: Client, keys: Idempotency
) -> None:
    sales = api.token("sam", "sales", "agent")
    held = dead_registration(api, sales)
    later(keys, keys.lease_seconds + 1)
    retry = keyed_registration(client, sales)
    assert retry.status_code == 201
    assert retry.json()["id"] == str(created_id(held.reservation, "sam", KEY))
    assert keyed_registration(client, sales).json() == retry.json()
    assert head(api) == 1


def test_a_dead_change_that_did_not_commit_runs_exactly_once(
    api: EmbeddedApi, client: Client, keys: Idempotency
) -> None:
    sales = api.token("sam", "sales", "agent")
    customer = register(client, sales)
    path, body = f"/v1/customers/{customer}", {"company": "Navy"}
    DeadProcess(api, sales).reserved("PATCH", path, msgspec.convert(body, cc.UpdateProfile))
    later(keys, keys.lease_seconds + 1)
    retry = client.patch(path, json=body, headers=sales | {"Idempotency-Key": KEY})
    assert (retry.status_code, retry.json()["version"]) == (200, 2)
    assert client.patch(path, json=body, headers=sales | {"Idempotency-Key": KEY}).json() == (
        retry.json()
    )
    assert head(api) == 2


def test_a_live_key_in_flight_still_answers_409(
    api: EmbeddedApi, client: Client, keys: Idempotency
) -> None:
    sales = api.token("sam", "sales", "agent")
    dead_registration(api, sales)
    later(keys, keys.lease_seconds / 2)
    retry = keyed_registration(client, sales)
    assert retry.status_code == 409
    assert retry.json()["reason"] == "idempotency-key-in-use"
    assert head(api) == 0


def test_a_retry_of_a_completed_key_returns_the_stored_answer(
    api: EmbeddedApi, client: Client
) -> None:
    sales = api.token("sam", "sales", "agent")
    first, again = keyed_registration(client, sales), keyed_registration(client, sales)
    assert (first.status_code, again.status_code) == (201, 201)
    assert again.json() == first.json()
    assert head(api) == 1


def test_a_different_request_with_the_key_is_refused_even_after_the_lease(
    api: EmbeddedApi, client: Client, keys: Idempotency
) -> None:
    sales = api.token("sam", "sales", "agent")
    dead_registration(api, sales)
    later(keys, keys.lease_seconds + 1)
    other = keyed_registration(client, sales, {"name": "Ada"})
    assert other.status_code == 409
    assert other.json()["reason"] == "idempotency-key-reused"
    assert head(api) == 0


def test_an_expired_key_is_forgotten_and_may_be_reused(
    api: EmbeddedApi, client: Client, keys: Idempotency
) -> None:
    sales = api.token("sam", "sales", "agent")
    first = keyed_registration(client, sales).json()
    later(keys, keys.retention_seconds + 1)
    again = keyed_registration(client, sales)
    other = keyed_registration(client, sales, {"name": "Ada"})
    assert again.status_code == 201
    assert again.json()["id"] != first["id"]  # a new request: the old answer was forgotten
    assert other.status_code == 409  # ... and is now the key's request
    assert head(api) == 2


def test_another_principals_events_with_the_same_key_do_not_count(
    api: EmbeddedApi, client: Client, keys: Idempotency
) -> None:
    sam, sara = api.token("sam", "sales", "agent"), api.token("sara", "sales", "agent")
    customer = register(client, sam)
    path, mine = f"/v1/customers/{customer}", {"company": "Army"}
    DeadProcess(api, sam).reserved("PATCH", path, msgspec.convert(mine, cc.UpdateProfile))
    theirs = client.patch(path, json={"company": "Navy"}, headers=sara | {"Idempotency-Key": KEY})
    assert (theirs.status_code, theirs.json()["version"]) == (200, 2)
    later(keys, keys.lease_seconds + 1)
    retry = client.patch(path, json=mine, headers=sam | {"Idempotency-Key": KEY})
    assert (retry.status_code, retry.json()["version"]) == (200, 3)  # run, not sara's answer
    assert head(api) == 3


def test_a_recovered_erasure_destroys_the_customers_key(
    api: EmbeddedApi, client: Client, keys: Idempotency
) -> None:
    sales, admin = api.token("sam", "sales", "agent"), api.token("root", "sales", "admin")
    customer = uuid.UUID(register(client, sales))
    path, command = f"/v1/customers/{customer}/erasure", cc.EraseCustomer(reason="asked")
    dead = DeadProcess(api, admin)
    first = dead.committed(dead.reserved("POST", path, command), command, customer)
    assert not api.runtime.keyring.store.destroyed(customer)  # died before destroying it
    later(keys, keys.lease_seconds + 1)
    retry = client.post(path, json={"reason": "asked"}, headers=admin | {"Idempotency-Key": KEY})
    assert (retry.status_code, retry.json()) == (200, as_json(first))
    assert api.runtime.keyring.store.destroyed(customer)


def test_a_change_whose_answer_could_not_be_stored_answers_it_on_retry(
    api: EmbeddedApi, client: Client, keys: Idempotency, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The command committed, then storing its answer failed (the key store unreachable
    for a moment): the key is not released, so a retry is not run again (it would find
    the conversation closed, a 409); once the lease expires it answers the committed
    result, with nothing stored twice."""
    support = api.token("sue", "support", "agent")
    customer = register(client, support)
    opened = {"customer_id": customer, "channel": "email", "subject": "Hi"}
    conversation = client.post("/v1/conversations", json=opened, headers=support).json()["id"]
    path, body = f"/v1/conversations/{conversation}/close", {"outcome": "resolved"}
    keyed = support | {"Idempotency-Key": KEY}
    complete = keys.complete

    def unreachable(*args: Any) -> None:
        monkeypatch.setattr(keys, "complete", complete)  # back after this once
        raise ConnectionError("the key store is unreachable")

    monkeypatch.setattr(keys, "complete", unreachable)
    failed = client.post(path, json=body, headers=keyed)
    assert failed.status_code >= 500
    events = head(api)
    in_flight = client.post(path, json=body, headers=keyed)
    assert (in_flight.status_code, in_flight.json()["reason"]) == (409, "idempotency-key-in-use")
    later(keys, keys.lease_seconds + 1)
    retry = client.post(path, json=body, headers=keyed)
    assert retry.status_code == 200, retry.text
    assert retry.json()["position"] == events
    assert client.post(path, json=body, headers=keyed).json() == retry.json()
    assert head(api) == events
