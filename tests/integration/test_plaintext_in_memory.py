"""Personal data is plaintext only in the memory of a request allowed to see it.

* Unique markers go through every personal field (`tests.e2e.at_rest.exercise`), every
  kind of read shows them, and then no object the API process can still reach holds
  one: reads load aggregates sealed (`services.current_state`), so do commands, which
  keep them sealed between commands (`services.sealed_state`), and parsed query strings
  are forgotten (`services.api.parsed_queries`). The heap is searched through
  the garbage collector: every container it tracks, for a string referent holding a
  marker (strings are not containers, so each is found through what holds it).
* Reads open only what their caller may see: a marketing manager's read of a customer
  and of its history never opens the e-mail they may not see, and an event stream opens
  only the events it delivers, judging the others by sealed states.
* So do commands: a command opens only the values its decision compares and its caller
  may see, and the commands' cache holds every aggregate sealed between commands.
"""

from __future__ import annotations

import gc
import logging
from collections.abc import Callable
from pathlib import Path
from uuid import UUID

import pytest
from litestar._parsers import parse_query_string
from litestar.testing import TestClient

from consumers.keyring import Keyring
from services.access.rules import Principal, Role
from services.aggregate_cache import KEPT_SECONDS, AggregateCache
from services.api.events_stream import EventStream
from services.commands import Caller
from tests.e2e.at_rest import Markers, exercise
from tests.e2e.processes import eventually
from tests.fake_clock import Clock
from tests.integration.api_support import embedded_api


def test_no_personal_plaintext_stays_reachable_once_the_requests_are_answered(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    caplog.set_level(logging.WARNING, logger="httpx")  # this test's client logs its URLs
    # The sweep runs when this test says: the app's own, every second, could forget the
    # parsed queries before the first search below has found them there.
    monkeypatch.setattr("services.api.app.SWEEP_SECONDS", 3600.0)
    markers, clock = Markers(), Clock()
    with embedded_api(tmp_path) as api, TestClient(api.app) as client:
        services = api.app.state.services
        services.commands.cache = AggregateCache(clock=clock)
        client.headers.update(api.token("ada", "sales", "admin"))
        customer, _ = exercise(client, markers)
        api.catch_up()
        conversation = _first(
            client, "/v1/departments/support/conversations?status=open", "conversation_id"
        )
        task = _first(client, "/v1/departments/sales/tasks", "task_id")
        for path in (
            f"/v1/customers/{customer}",
            f"/v1/customers/{customer}/history",
            f"/v1/customers/{customer}/timeline",
            f"/v1/conversations/{conversation}",
            f"/v1/conversations/{conversation}/history",
            f"/v1/tasks/{task}",
            "/v1/departments/sales/customers",
            "/v1/customers?name=" + markers("name2"),
        ):
            shown = client.get(path)
            assert shown.status_code == 200, (path, shown.text)
            assert markers.prefix in shown.text, path  # the read did open them
        del shown
        assert len(services.current._kept) == 3  # the customer, conversation and task read

        held = _holders(markers)  # the search finds what is still held:
        assert "tuple" in held  # parsed queries (a search, a retraction's reason)
        assert not {"Customer", "Conversation", "Message", "Task"} & set(held)  # sealed
        assert len(services.commands.cache) == 3  # as the commands hold them

        clock.now += KEPT_SECONDS + 0.1
        services.sweep()  # what the API runs every second
        assert _holders(markers) == []


def test_the_api_sweeps_idle_aggregates_and_parsed_queries_every_second(
    tmp_path: Path,
) -> None:
    with embedded_api(tmp_path) as api, TestClient(api.app) as client:
        services = api.app.state.services
        cache = services.commands.cache = AggregateCache(idle_seconds=0.0, kept_seconds=0.0)
        client.headers.update(api.token("ada", "sales", "admin"))
        customer = client.post("/v1/customers", json={"name": "Ada", "owner_department": "sales"})
        assert customer.status_code == 201, customer.text
        assert client.get("/v1/customers?name=Ada").status_code == 200
        assert len(cache) == 1
        assert parse_query_string.cache_info().currsize > 0

        eventually(
            lambda: (len(cache) == 0 and parse_query_string.cache_info().currsize == 0) or None,
            within=5,
            what="the sweep",
        )


def _first(client: TestClient, path: str, key: str) -> str:  # type: ignore[type-arg]
    page = client.get(path)
    assert page.status_code == 200, page.text
    return str(page.json()["items"][0][key])


def _holders(markers: Markers) -> list[str]:
    """The types of the reachable objects holding a string with a marker (but the
    markers' own strings), looking into objects the collector does not track (a
    msgspec Struct of strings, a tuple of them) through the tracked ones holding them."""
    gc.collect()
    own = {id(markers.prefix), id(markers.phone_digits)}
    needles = (markers.prefix, markers.phone_digits)
    found: list[str] = []

    def search(holder: object, depth: int) -> None:
        for item in gc.get_referents(holder):
            if type(item) is str:
                if id(item) not in own and any(n in item for n in needles):
                    found.append(type(holder).__name__)
            elif depth and not gc.is_tracked(item):
                search(item, depth - 1)

    for holder in gc.get_objects():
        search(holder, 3)
    return found


def test_the_event_stream_opens_only_what_it_delivers_unmasked(tmp_path: Path) -> None:
    """A support agent's stream over everything the markers went through: a sales
    customer, a conversation handed off to support, a sales task. Only the events it
    delivers are opened, and the states it judges them by stay sealed."""
    markers = Markers()
    with embedded_api(tmp_path) as api, TestClient(api.app) as client:
        client.headers.update(api.token("ada", "sales", "admin"))
        exercise(client, markers)
        services = api.app.state.services
        keyring = services.commands.keyring
        opened: list[str] = []
        decrypt = keyring.decrypt
        keyring.decrypt = lambda subject, sealed: _kept(opened, decrypt(subject, sealed))
        sue = Principal(name="sue", department="support", role=Role.AGENT)
        stream = EventStream(services, Caller(principal=sue, correlation_id="t"), token="")
        states = stream.states()

        _, delivered = stream.page(sue, None, 0, states)

    types = [event.wire_name() for _, event, _ in delivered]
    assert types == [  # support sees the conversation from its hand-off on
        "ConversationHandedOff",
        "ConversationClosed",
        "SatisfactionRated",
        "RecommendationScored",
        "ConversationReopened",
    ]
    shown = str([document for _, _, document in delivered])
    assert [value for value in opened if markers.prefix in value]  # it did open those
    assert all(value in shown for value in opened)  # and nothing it did not deliver
    for state in states._states.values():  # judged by sealed states
        assert markers.prefix not in str(vars(state)), type(state).__name__


def _kept(opened: list[str], value: str) -> str:
    opened.append(value)
    return value


def _opening_spied(keyring: Keyring) -> list[str]:
    """Every value `keyring` opens from now on, as it opens it."""
    opened: list[str] = []
    decrypt, subject_opener = keyring.decrypt, keyring.subject_opener
    keyring.decrypt = lambda subject, sealed: _kept(opened, decrypt(subject, sealed))  # type: ignore[method-assign]

    def spied_opener(subject: UUID) -> Callable[[str], str]:
        open_value = subject_opener(subject)
        return lambda sealed: _kept(opened, open_value(sealed))

    keyring.subject_opener = spied_opener  # type: ignore[method-assign]
    return opened


def _shared_with_marketing(client: TestClient, admin: dict[str, str], markers: Markers) -> str:  # type: ignore[type-arg]
    """A sales customer shared with marketing, without e-mail consent: its id."""
    body = {"name": markers("name"), "email": markers("mail") + "@example.com",
            "owner_department": "sales"}  # fmt: skip
    customer = str(client.post("/v1/customers", json=body, headers=admin).json()["id"])
    shared = client.post(
        f"/v1/customers/{customer}/shares", json={"department": "marketing"}, headers=admin
    )
    assert shared.status_code == 200, shared.text
    return customer


def test_a_read_never_opens_a_field_its_caller_may_not_see(tmp_path: Path) -> None:
    """Marketing staff see a customer's e-mail only with the customer's consent: their
    reads of the customer and of its history mask it without ever opening it."""
    markers = Markers()
    with embedded_api(tmp_path) as api, TestClient(api.app) as client:
        admin = api.token("ada", "sales", "admin")
        customer = _shared_with_marketing(client, admin, markers)
        opened = _opening_spied(api.app.state.services.commands.keyring)
        mia = api.token("mia", "marketing", "manager")

        read = client.get(f"/v1/customers/{customer}", headers=mia)
        history = client.get(f"/v1/customers/{customer}/history", headers=mia)

    assert read.status_code == 200, read.text
    assert history.status_code == 200, history.text
    assert read.json()["email"] == "[masked]"
    assert read.json()["name"] == markers("name")
    assert markers("name") in opened  # opened for both reads
    assert not [value for value in opened if markers("mail") in value]  # never the e-mail


def test_a_command_never_opens_a_field_its_caller_may_not_see(tmp_path: Path) -> None:
    """A marketing agent's commands on a customer whose e-mail they may not see, from the
    commands' cache and from a load: none opens the e-mail. A change to it is recorded
    unopened, even to the same value; a field they may see is still compared. Between
    commands the cache holds the customer sealed: no marker is reachable."""
    markers = Markers()
    with embedded_api(tmp_path) as api, TestClient(api.app) as client:
        admin = api.token("ada", "sales", "admin")
        url = f"/v1/customers/{_shared_with_marketing(client, admin, markers)}"
        commands = api.app.state.services.commands
        opened = _opening_spied(commands.keyring)
        mia = api.token("mia", "marketing", "agent")
        new_mail = {"email": markers("mail2") + "@example.com"}

        def version(method: str, path: str, body: dict[str, str]) -> int:
            answer = client.request(method, path, json=body, headers=mia)
            assert answer.status_code == 200, answer.text
            return int(answer.json()["version"])

        assert version("PATCH", url, {"name": markers("name")}) == 2  # cached: a no-op
        assert version("POST", f"{url}/tags", {"tag": "vip"}) == 3
        commands.cache.clear()
        assert version("PATCH", url, new_mail) == 4  # loaded
        assert version("PATCH", url, new_mail) == 5  # unopened: recorded again
        assert version("PATCH", url, {"name": markers("name2")}) == 6
        assert markers("name") in opened  # compared: the no-op was found so
        assert not [value for value in opened if markers("mail") in value]  # never an e-mail
        opened.clear()  # what the spy kept
        assert _holders(markers) == []  # nothing held opened between commands
