"""An API process on PostgreSQL learns of another process's erasure by itself
(`services.erasure_watch`): it drops the plaintext it holds of that customer (the
aggregates its commands cached) before anyone asks it anything, and then refuses
writes on the customer."""

from __future__ import annotations

from pathlib import Path
from typing import Any
from uuid import UUID

from litestar.testing import TestClient

from consumers.key_stores import PostgresKeyStore
from services.api.deps import Services
from services.bootstrap import connect_pool
from tests.e2e.processes import eventually
from tests.integration.api_support import embedded_api


def test_another_process_s_erasure_empties_this_one_s_caches(pg_url: str, tmp_path: Path) -> None:
    with embedded_api(tmp_path, database_url=pg_url) as api, TestClient(app=api.app) as client:
        services: Services = api.app.state.services
        sales = api.token("sam", "sales", "agent")

        def created(url: str, body: dict[str, Any]) -> str:
            response = client.post(url, json=body, headers=sales)
            assert response.status_code == 201, response.text
            return str(response.json()["id"])

        customer = created("/v1/customers", {"name": "Ada", "email": "ada@example.com"})
        opened = {"customer_id": customer, "channel": "phone", "subject": "s"}
        conversation = created("/v1/conversations", opened)
        message = {"direction": "inbound", "author": "Ada", "content": "my new address is ..."}
        created(f"/v1/conversations/{conversation}/messages", message)
        assert len(services.commands.cache) == 2  # the customer and her conversation

        pool = connect_pool(pg_url)  # another process destroys her key
        PostgresKeyStore(pool).destroy(UUID(customer))
        pool.close()

        eventually(lambda: len(services.commands.cache) == 0, within=10, what="the caches dropped")
        again = client.post(
            f"/v1/conversations/{conversation}/messages", json=message, headers=sales
        )
        assert again.status_code == 409, again.text
        assert again.json()["type"].endswith("/customer-erased")
