"""What the Idempotency-Key table keeps of a request confirms no guess of its personal
values. A key's row holds a fingerprint of its request (method, path and body, which
carries the personal values of the command in plaintext) for a day after the command,
erasure or not. Someone who reads that table but holds no key must not be able to test
a guessed phone number or e-mail against it, so the fingerprint is keyed, under a
secret of the key store, as the search terms are (`consumers.blind_index`).
"""

from __future__ import annotations

import hashlib
import sqlite3
from pathlib import Path

import msgspec
import psycopg
import pytest
from litestar.testing import TestClient

from services import customer_commands as cc
from tests.integration.api_support import embedded_api

PHONE = "+4930555010"
BODY = {"name": "Grace Hopper", "phone": PHONE, "owner_department": "sales"}


def _registered(tmp_path: Path, url: str | None) -> str:
    """Register a customer under an Idempotency-Key; the fingerprint its row keeps."""
    with embedded_api(tmp_path, database_url=url) as api, TestClient(api.app) as client:
        headers = api.token("sam", "sales", "agent") | {"Idempotency-Key": "signup-1"}
        assert client.post("/v1/customers", json=BODY, headers=headers).status_code == 201
        again = client.post("/v1/customers", json=BODY, headers=headers)
        assert again.status_code == 201, again.text  # a retry still gets the first answer
    query = "SELECT fingerprint FROM crm_idempotency"
    if url is None:
        with sqlite3.connect(tmp_path / "idempotency.db") as conn:
            (row,) = conn.execute(query).fetchall()
    else:
        with psycopg.connect(url) as pg:
            (row,) = pg.execute(query).fetchall()
    return str(row[0])


def _unkeyed(phone: str) -> str:
    """What anyone could compute for a guessed phone: the request's plain SHA-256."""
    command = msgspec.convert(BODY | {"phone": phone}, cc.RegisterCustomer)
    request = b"POST /v1/customers\n" + msgspec.json.encode(command)
    return hashlib.sha256(request).hexdigest()


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_a_stored_fingerprint_confirms_no_guessed_phone(
    backend: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    url = None if backend == "sqlite" else request.getfixturevalue("pg_url")
    stored = _registered(tmp_path, url)
    guesses = [f"+49305550{n:02d}" for n in range(100)]
    assert PHONE in guesses
    assert [g for g in guesses if _unkeyed(g) == stored] == []


def test_deployments_fingerprint_one_request_differently(tmp_path: Path) -> None:
    """Each deployment has its own secret: the same request leaves unrelated rows."""
    assert _registered(tmp_path / "one", None) != _registered(tmp_path / "two", None)
