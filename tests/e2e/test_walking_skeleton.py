"""The walking skeleton: one command travels the whole pipeline, in both modes.

PostgreSQL + Kafka: HTTP command → `crm api` stores the event in PostgreSQL → `crm relay`
publishes it to `crm.customer.v1` → `crm consume sales` writes the read-model row.
Embedded: `crm run` alone (SQLite event store, projections in process, read models in
SQLite), reached with the bootstrap admin token it prints.

In both, the read-model row holds the personal fields sealed (`enc:v1:...`), as the event
does: never the plaintext at rest. It opens to the plaintext with the customer's key
(`consumers.sealed_rows.open_rows`, the deployment's key store), and the API opens it
for a caller allowed to see it.
"""

from __future__ import annotations

import re
import sqlite3
from pathlib import Path
from typing import Any
from uuid import UUID

import httpx
import psycopg
from psycopg.rows import dict_row

from consumers.envelope import from_cloudevent, topic_name
from consumers.kafka_io import read_all
from consumers.key_stores import SqliteKeyStore
from consumers.keyring import Keyring
from consumers.sealed_rows import open_rows, sealed
from tests.e2e.processes import crm_processes, eventually, free_port, pipeline_env, wait_for_http
from tests.integration.projection_support import pg_keyring

CUSTOMER = {"name": "Ada Lovelace", "email": "ada@example.com", "owner_department": "sales"}
PERSONAL = ("name", "email")
Row = dict[str, Any]


def test_postgres_kafka_pipeline(
    pg_url: str, kafka_bootstrap: str, topic_prefix: str, tmp_path: Path
) -> None:
    port = free_port()
    env = pipeline_env(pg_url, kafka_bootstrap, topic_prefix, tmp_path)
    with crm_processes(env, tmp_path) as crm:
        crm.run("topics", "ensure", "--partitions", "1")
        token = crm.run("principals", "add", "sam", "--department", "sales", "--role", "agent")
        api = crm.start("api", "--port", str(port))
        crm.start("relay")
        crm.start("consume", "sales")
        base = f"http://127.0.0.1:{port}"
        wait_for_http(base, api)
        answer = _register(base, token.strip().splitlines()[-1])

        row = eventually(lambda: _sales_row(pg_url, answer["id"]), what="the sales read model")
        with pg_keyring(pg_url) as keyring:
            _assert_sealed_and_opens(row, keyring)
        published = [
            from_cloudevent(record.value)[0]
            for record in read_all(kafka_bootstrap, [topic_name("customer", topic_prefix)])
        ]
        assert [(e.wire_name(), str(e.originator_id)) for e in published] == [
            ("CustomerRegistered", answer["id"])
        ]
        assert b"Ada" not in b"".join(  # personal data travels sealed
            r.value for r in read_all(kafka_bootstrap, [topic_name("customer", topic_prefix)])
        )


def test_embedded_default(tmp_path: Path) -> None:
    port = free_port()
    data_dir = tmp_path / "data"
    env = {"CRM_DATA_DIR": str(data_dir), "CRM_DATABASE_URL": ""}
    with crm_processes(env, tmp_path) as crm:
        service = crm.start("run", "--port", str(port))
        base = f"http://127.0.0.1:{port}"
        wait_for_http(base, service)
        printed = crm.output(service)
        assert f"{base}/docs" in printed
        token = re.search(r"token[^:]*: (\S+)", printed)
        assert token, printed
        answer = _register(base, token.group(1))
        row = eventually(
            lambda: _sqlite_row(data_dir / "readmodels.db", answer["id"]), what="the read model"
        )
        _assert_sealed_and_opens(row, Keyring(SqliteKeyStore(data_dir / "keys.db")))
        listed = _department_customers(base, token.group(1), answer["position"])
        assert [(c["customer_id"], c["name"], c["email"]) for c in listed] == [
            (answer["id"], "Ada Lovelace", "ada@example.com")
        ]


def _register(base: str, token: str) -> dict[str, Any]:
    response = httpx.post(
        f"{base}/v1/customers", json=CUSTOMER, headers={"Authorization": f"Bearer {token}"}
    )
    assert response.status_code == 201, response.text
    answer: dict[str, Any] = response.json()
    assert answer["version"] == 1
    assert answer["position"] >= 1
    return answer


def _assert_sealed_and_opens(row: Row, keyring: Keyring) -> None:
    """Sealed at rest, and the customer's key opens it to what was registered."""
    assert all(sealed(row[name]) for name in PERSONAL), row
    assert not {CUSTOMER[name] for name in PERSONAL} & {row[name] for name in PERSONAL}
    open_rows(keyring, [(row, PERSONAL)])
    assert {name: row[name] for name in (*PERSONAL, "owner_department")} == CUSTOMER


def _department_customers(base: str, token: str, position: int) -> list[Row]:
    """The sales department's customers, opened by the API for the admin."""
    response = httpx.get(
        f"{base}/v1/departments/sales/customers",
        params={"min_position": position},
        headers={"Authorization": f"Bearer {token}"},
    )
    assert response.status_code == 200, response.text
    items: list[Row] = response.json()["items"]
    return items


def _sales_row(url: str, customer_id: str) -> Row | None:
    with psycopg.connect(url, row_factory=dict_row) as conn:
        try:
            return conn.execute(
                "SELECT customer_id, name, email, owner_department FROM sales.customers"
                " WHERE customer_id = %s",
                (UUID(customer_id),),
            ).fetchone()
        except psycopg.errors.UndefinedTable:
            return None


def _sqlite_row(path: Path, customer_id: str) -> Row | None:
    if not path.exists():
        return None
    with sqlite3.connect(path) as conn:
        conn.row_factory = sqlite3.Row
        try:
            row = conn.execute(
                "SELECT customer_id, name, email, owner_department FROM sales__customers"
                " WHERE customer_id = ?",
                (customer_id,),
            ).fetchone()
        except sqlite3.OperationalError:
            return None
    return None if row is None else dict(row)
