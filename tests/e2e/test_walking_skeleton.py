"""The walking skeleton: one command travels the whole pipeline, in both modes.

PostgreSQL + Kafka: HTTP command → `crm api` stores the event in PostgreSQL → `crm relay`
publishes it to `crm.customer.v1` → `crm consume sales` writes the read-model row.
Embedded: `crm run` alone (SQLite event store, projections in process, read models in
SQLite), reached with the bootstrap admin token it prints.
"""

from __future__ import annotations

import re
import sqlite3
from pathlib import Path
from typing import Any
from uuid import UUID

import httpx
import psycopg

from consumers.envelope import from_cloudevent, topic_name
from consumers.kafka_io import read_all
from tests.e2e.processes import crm_processes, eventually, free_port, pipeline_env, wait_for_http

CUSTOMER = {"name": "Ada Lovelace", "email": "ada@example.com", "owner_department": "sales"}


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
        assert row == ("Ada Lovelace", "ada@example.com", "sales")
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
        assert row == ("Ada Lovelace", "ada@example.com", "sales")


def _register(base: str, token: str) -> dict[str, Any]:
    response = httpx.post(
        f"{base}/v1/customers", json=CUSTOMER, headers={"Authorization": f"Bearer {token}"}
    )
    assert response.status_code == 201, response.text
    answer: dict[str, Any] = response.json()
    assert answer["version"] == 1
    assert answer["position"] >= 1
    return answer


def _sales_row(url: str, customer_id: str) -> tuple[str, str, str] | None:
    with psycopg.connect(url) as conn:
        try:
            row = conn.execute(
                "SELECT name, email, owner_department FROM sales.customers WHERE customer_id = %s",
                (UUID(customer_id),),
            ).fetchone()
        except psycopg.errors.UndefinedTable:
            return None
    return None if row is None else (row[0], row[1], row[2])


def _sqlite_row(path: Path, customer_id: str) -> tuple[str, str, str] | None:
    if not path.exists():
        return None
    with sqlite3.connect(path) as conn:
        try:
            row = conn.execute(
                "SELECT name, email, owner_department FROM sales__customers WHERE customer_id = ?",
                (customer_id,),
            ).fetchone()
        except sqlite3.OperationalError:
            return None
    return None if row is None else (row[0], row[1], row[2])
