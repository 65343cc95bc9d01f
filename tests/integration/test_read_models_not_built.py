"""An API whose projections have never run: its read-model routes answer 503
`read-model-not-built` (with `Retry-After`), not a 500, until the read models exist.

That is an API started before its consumers, or a deployment adding a read model: the
views a query reads do not exist until a projection's first generation is installed.
`crm api` runs as a real process on a fresh PostgreSQL database, no consumer beside it.
"""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from consumers.store_postgres import PostgresStore
from projections import PROJECTIONS
from tests.e2e.processes import crm_processes, free_port, wait_for_http

pytestmark = pytest.mark.integration

READ_MODEL_PATHS = (
    "/v1/departments/sales/customers",
    "/v1/departments/sales/conversations",
    "/v1/departments/sales/tasks",
    "/v1/stats/satisfaction",
    "/v1/stats/tasks",
    "/v1/customers?company=Ac",
    "/v1/customers/{id}/timeline",
)


def test_read_models_never_built_are_a_503_until_their_projections_install(
    pg_url: str, tmp_path: Path
) -> None:
    env = {"CRM_DATABASE_URL": pg_url, "CRM_DATA_DIR": str(tmp_path / "data")}
    with crm_processes(env, tmp_path) as crm:
        base = f"http://127.0.0.1:{free_port()}"
        api = crm.start("api", "--port", base.rsplit(":", 1)[1])
        wait_for_http(base, api)
        out = crm.run("principals", "add", "boss", "--department", "sales", "--role", "admin")
        headers = {"Authorization": f"Bearer {out.strip().splitlines()[-1]}"}
        body = {"name": "Ada", "company": "Acme", "owner_department": "sales"}
        created = httpx.post(f"{base}/v1/customers", json=body, headers=headers, timeout=30)
        assert created.status_code == 201, created.text  # the event store needs no projection
        paths = [path.format(id=created.json()["id"]) for path in READ_MODEL_PATHS]

        before = [httpx.get(f"{base}{path}", headers=headers, timeout=30) for path in paths]
        ready = httpx.get(f"{base}/readyz", timeout=30)
        store = PostgresStore(pg_url)
        try:
            for projection in PROJECTIONS.values():
                store.install(projection)  # what each projection's first run does first
        finally:
            store.close()
        after = [httpx.get(f"{base}{path}", headers=headers, timeout=30) for path in paths]

    assert [(r.status_code, r.json()["type"].rsplit("/", 1)[-1]) for r in before] == [
        (503, "read-model-not-built")
    ] * len(paths), [r.text for r in before]
    assert {r.headers["Retry-After"] for r in before} == {"30"}
    assert "never run" in before[0].json()["detail"]
    assert "shared has never run" in ready.json()["checks"]["projections"]  # /readyz says it
    assert [r.status_code for r in after] == [200] * len(paths), [r.text for r in after]
    assert after[0].json()["items"] == []  # built, and empty until the projection applies
