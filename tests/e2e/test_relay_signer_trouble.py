"""A refusing audit signer in `crm relay` shows where operators look, not only in the
relay's log: its health row, and so the API's `/readyz` and `/metrics`.

Red team (twenty-fifth session): on PostgreSQL the relay signs checkpoints, and a
refusal (its record beside the key lost, the store rewritten) appeared in its log alone;
the API said "nothing signed for N s" only after several intervals. Real processes on
the test's PostgreSQL database and Kafka topics.
"""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from consumers.pg_pool import open_pool
from consumers.process_health import read_health
from tests.e2e.processes import crm_processes, eventually, free_port, pipeline_env, wait_for_http

pytestmark = pytest.mark.e2e


def test_a_relay_refusing_to_sign_says_so_in_its_health_row_and_readyz(
    pg_url: str, kafka_bootstrap: str, topic_prefix: str, tmp_path: Path
) -> None:
    env = pipeline_env(pg_url, kafka_bootstrap, topic_prefix, tmp_path)
    with crm_processes(env, tmp_path) as crm:
        crm.run("topics", "ensure", "--partitions", "1")
        out = crm.run("principals", "add", "ops", "--department", "sales", "--role", "admin")
        headers = {"Authorization": f"Bearer {out.strip().splitlines()[-1]}"}
        base = f"http://127.0.0.1:{free_port()}"
        api = crm.start("api", "--port", base.rsplit(":", 1)[1])
        wait_for_http(base, api)
        body = {"name": "Signed once", "owner_department": "sales"}
        assert httpx.post(f"{base}/v1/customers", json=body, headers=headers).status_code == 201
        crm.run("audit", "checkpoint")
        key = tmp_path / "data" / "audit-signing.key"
        key.with_name(f"{key.name}.last-signed").unlink()  # lost, or never made
        body["name"] = "Due to be signed"
        assert httpx.post(f"{base}/v1/customers", json=body, headers=headers).status_code == 201
        crm.start("relay", env={"CRM_AUDIT_CHECKPOINT_SECONDS": "1"})
        pool = open_pool(pg_url, max_size=1)
        try:

            def troubled() -> str | None:
                rows = {row.process: row.trouble for row in read_health(pool)}
                return rows.get("relay")

            trouble = eventually(troubled, within=120, what="the relay's trouble in its row")
        finally:
            pool.close()
        assert trouble.startswith("audit signer refusing to sign")

        def pipeline() -> str | None:
            answer = httpx.get(f"{base}/readyz", headers=headers).json()
            shown: str | None = answer["checks"].get("pipeline")
            return shown

        shown = eventually(pipeline, within=60, what="/readyz to show the relay's trouble")
        assert f"relay: {trouble}" in shown
        metrics = httpx.get(f"{base}/metrics", headers=headers).text
        assert 'crm_process_trouble{process="relay"} 1.0' in metrics
