"""Regression (issue 14, "stuck retries"): an Idempotency-Key in flight when its process
was killed answered 409 `idempotency-key-in-use` forever after a restart, whether or not
its command had committed. Fails on the code before leases (checked against it)."""

from __future__ import annotations

import time
from pathlib import Path

import msgspec
import pytest
from litestar.testing import TestClient

from services import customer_commands as cc
from tests.integration.api_support import embedded_api


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_a_key_in_flight_when_the_process_died_is_free_after_a_restart(
    backend: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    url = None if backend == "sqlite" else request.getfixturevalue("pg_url")
    body = {"name": "Grace Hopper"}
    command = msgspec.json.encode(msgspec.convert(body, cc.RegisterCustomer))
    with embedded_api(tmp_path, database_url=url) as killed:
        sales = killed.token("sam", "sales", "agent") | {"Idempotency-Key": "order-42"}
        # The request was running when the process was killed: its key reserved, no answer.
        keys = killed.app.state.services.idempotency
        keys.begin("sam", "order-42", keys.fingerprint("POST", "/v1/customers", command))
    with embedded_api(tmp_path, database_url=url) as restarted, TestClient(restarted.app) as client:
        restarted.app.state.services.idempotency.clock = lambda: time.time() + 3600
        retry = client.post("/v1/customers", json=body, headers=sales)
        assert retry.status_code == 201, retry.text
        again = client.post("/v1/customers", json=body, headers=sales)
        assert again.json() == retry.json()
        assert restarted.runtime.app.head_position() == 1
