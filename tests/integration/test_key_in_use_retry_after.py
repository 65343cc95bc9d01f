"""A keyed retry refused 409 `idempotency-key-in-use` says when to try again:
`Retry-After`, the whole seconds left of the holder's lease (at least one).

After a failure that does not prove the command stored nothing (here the database out of
reach as it ran: 503 `event-store-unavailable`), its key stays held for its lease, and
a retry with the key is refused until the lease runs out; then it takes the key over and
is served. Before, the 409 carried no `Retry-After`, and a client could only guess. On
SQLite and PostgreSQL; the API's idempotency clock is moved by hand, not slept through.
"""

from __future__ import annotations

from typing import Any

import psycopg
import pytest
from litestar.testing import TestClient

from services.idempotency import Idempotency
from tests.fake_clock import Clock
from tests.integration.api_support import EmbeddedApi

pytestmark = pytest.mark.integration

LEASE = 30.0  # `Idempotency`'s default, which the API runs with


def test_a_retry_while_the_key_is_held_is_told_the_lease_left(
    api_on_each_store: EmbeddedApi, monkeypatch: pytest.MonkeyPatch
) -> None:
    api = api_on_each_store
    keys: Idempotency = api.app.state.services.idempotency
    assert keys.lease_seconds == LEASE
    keys.clock = clock = Clock(1_000_000.0)
    commands = api.app.state.services.commands

    async def out_of_reach(*_: Any) -> None:
        raise psycopg.OperationalError("connection lost as the command ran")

    headers = api.token("ann", "sales", "agent") | {"Idempotency-Key": "signup-7"}
    with TestClient(api.app) as client:

        def register() -> Any:
            return client.post("/v1/customers", json={"name": "Ada"}, headers=headers)

        with monkeypatch.context() as patched:
            patched.setattr(commands, "create", out_of_reach)
            lost = register()
        assert lost.status_code == 503, lost.text  # the key stays held: it may be stored
        seen = []
        for moved in (0.0, 10.2, LEASE - 0.5, LEASE):
            clock.now = 1_000_000.0 + moved
            refused = register()
            assert refused.status_code == 409, refused.text
            assert refused.json()["reason"] == "idempotency-key-in-use"
            seen.append(refused.headers.get("Retry-After"))
        assert seen == ["30", "20", "1", "1"]
        clock.now = 1_000_000.0 + LEASE + 0.01  # the lease ran out: a retry is served
        assert register().status_code == 201
