"""An id the API records is one its routes can name again: an order id or a message id
holding `/` was recorded, then `PATCH /v1/customers/{id}/orders/a%2Fb` (and a message's
correction and retraction) was a 404. Such an id is refused where it is first sent, a
4xx naming it, and one holding what percent-encoding carries is reachable. Nor may an
id be an address or a name (`@`, white space): it is stored in plaintext, where no
erasure reaches (red team: an e-mail's Message-ID as a message's id). Embedded."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from litestar.testing import TestClient

from tests.integration.api_support import EmbeddedApi

Client = TestClient[Any]
Headers = dict[str, str]
UNREACHABLE = ("a/b", "a\\b", "a%2Fb", "50%", ".", "..")
PERSONAL = ("<frida@example.com>", "Frida Fischer 1990-01-01")
REACHABLE = "#12a?b;c=ä"


def refused(api: EmbeddedApi, answer: Any, field: str) -> None:
    """A 400 (schema) or 422 (domain) naming `field`, and nothing stored."""
    assert answer.status_code in (400, 422), answer.text
    assert answer.json()["field"] == field, answer.text
    assert api.runtime.app.head_position() == 2, answer.text  # the customer, its talk


def customer_and_talk(client: Client, auth: Headers) -> tuple[str, str]:
    """The URLs of a new customer and of a conversation with them."""
    customer = client.post("/v1/customers", json={"name": "Ada"}, headers=auth).json()["id"]
    opened = {"customer_id": customer, "channel": "chat", "subject": "s"}
    talk = client.post("/v1/conversations", json=opened, headers=auth).json()["id"]
    return f"/v1/customers/{customer}", f"/v1/conversations/{talk}"


def test_an_order_or_message_id_no_path_can_name_is_refused_naming_it(
    client: Client, api: EmbeddedApi
) -> None:
    auth = api.token("sam", "sales", "agent")
    customer, talk = customer_and_talk(client, auth)
    message = {"direction": "inbound", "author": "Ada", "content": "hi"}
    for bad in (*UNREACHABLE, *PERSONAL, " .. "):  # the domain refuses what the schema lets by
        order = {"order_id": bad, "amount": "1", "currency": "EUR"}
        refused(api, client.post(f"{customer}/orders", json=order, headers=auth), "order_id")
        for entries, body in ((f"{talk}/messages", message), (f"{talk}/notes", {"content": "n"})):
            sent = client.post(entries, json=body | {"message_id": bad}, headers=auth)
            refused(api, sent, "message_id")


def test_an_id_holding_what_percent_encoding_carries_is_reachable(
    client: Client, api: EmbeddedApi
) -> None:
    auth = api.token("sam", "sales", "agent")
    customer, talk = customer_and_talk(client, auth)
    order = {"order_id": REACHABLE, "amount": "1", "currency": "EUR"}
    assert client.post(f"{customer}/orders", json=order, headers=auth).status_code == 200
    segment = quote(REACHABLE, safe="")
    shipped = client.patch(f"{customer}/orders/{segment}", json={"status": "shipped"}, headers=auth)
    assert shipped.status_code == 200, shipped.text
    note = {"content": "n", "message_id": REACHABLE}
    assert client.post(f"{talk}/notes", json=note, headers=auth).status_code == 201
    entry = f"{talk}/messages/{segment}"
    corrected = client.patch(entry, json={"content": "m", "reason": "typo"}, headers=auth)
    assert corrected.status_code == 200, corrected.text
    retracted = client.delete(entry, params={"reason": "wrong"}, headers=auth)
    assert retracted.status_code == 200, retracted.text
