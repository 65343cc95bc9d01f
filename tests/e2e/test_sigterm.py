"""SIGTERM (what container runtimes and systemd send) stops every long-running `crm`
process as Ctrl-C does: it finishes or abandons its batch, closes its stores and exits 0.
Each process first does real work, so there is something to close."""

from __future__ import annotations

import functools
import re
import signal
import subprocess
from pathlib import Path
from typing import Any
from uuid import UUID

import httpx
import psycopg
import pytest

from tests.e2e.processes import (
    Processes,
    crm_processes,
    eventually,
    free_port,
    pipeline_env,
    wait_for_http,
)

pytestmark = pytest.mark.e2e
CUSTOMER = {"name": "Grace Hopper", "owner_department": "sales"}


def _register(base: str, token: str) -> str:
    headers = {"Authorization": f"Bearer {token}"}
    response = httpx.post(f"{base}/v1/customers", json=CUSTOMER, headers=headers, timeout=30)
    assert response.status_code == 201, response.text
    answer: dict[str, Any] = response.json()
    return str(answer["id"])


def _terminated(crm: Processes, process: subprocess.Popen[bytes]) -> None:
    """SIGTERM; it exits 0 within a generous bound, having said why it stopped."""
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=60) == 0, crm.output(process)[-3000:]
    assert '"signal": "SIGTERM"' in crm.output(process)


def test_sigterm_stops_crm_run_with_its_sqlite_files_closed(tmp_path: Path) -> None:
    data = tmp_path / "data"
    with crm_processes({"CRM_DATA_DIR": str(data), "CRM_DATABASE_URL": ""}, tmp_path) as crm:
        port = free_port()
        service = crm.start("run", "--port", str(port))
        base = f"http://127.0.0.1:{port}"
        wait_for_http(base, service)
        token = re.search(r"token[^:]*: (\S+)", crm.output(service))
        assert token, crm.output(service)
        customer = _register(base, token.group(1))
        eventually(lambda: _in_embedded_view(base, token.group(1), customer), what="the view")
        _terminated(crm, service)
    assert sorted(p.name for p in data.iterdir() if p.name.endswith(("-wal", "-shm"))) == []


def _in_embedded_view(base: str, token: str, customer: str) -> bool | None:
    response = httpx.get(
        f"{base}/v1/departments/sales/customers", headers={"Authorization": f"Bearer {token}"}
    )
    return customer in response.text or None


def test_sigterm_stops_api_relay_and_consumer(
    pg_url: str, kafka_bootstrap: str, topic_prefix: str, tmp_path: Path
) -> None:
    env = pipeline_env(pg_url, kafka_bootstrap, topic_prefix, tmp_path)
    with crm_processes(env, tmp_path) as crm:
        crm.run("topics", "ensure", "--partitions", "1")
        token = crm.run("principals", "add", "sam", "--department", "sales", "--role", "agent")
        port = free_port()
        api = crm.start("api", "--port", str(port))
        relay, consumer = crm.start("relay"), crm.start("consume", "sales")
        wait_for_http(f"http://127.0.0.1:{port}", api)
        customer = _register(f"http://127.0.0.1:{port}", token.strip().splitlines()[-1])
        eventually(lambda: _in_sales(pg_url, customer), what="the sales read model")
        for process in (consumer, relay, api):
            _terminated(crm, process)


def _in_sales(url: str, customer: str) -> bool | None:
    with psycopg.connect(url) as conn:
        try:
            row = conn.execute(
                "SELECT 1 FROM sales.customers WHERE customer_id = %s", (UUID(customer),)
            ).fetchone()
        except psycopg.errors.UndefinedTable:
            return None
    return row is not None or None


@pytest.mark.parametrize("command", [("api",), ("relay",), ("consume", "sales")])
def test_sigterm_stops_a_process_waiting_for_its_database(
    command: tuple[str, ...], tmp_path: Path
) -> None:
    """Started while PostgreSQL is away, it waits (`services.bootstrap`); a signal ends
    that wait as it ends serving (nothing listens on the URL's port: refused)."""
    url = f"postgresql://crm:crm@127.0.0.1:{free_port()}/crm"
    env = {"CRM_DATABASE_URL": url, "CRM_DATA_DIR": str(tmp_path / "data")}
    with crm_processes(env, tmp_path) as crm:
        args = (*command, "--port", str(free_port())) if command == ("api",) else command
        process = crm.start(*args)
        waiting = functools.partial(_logged, crm, process, "dependency lost")
        eventually(waiting, within=60, what="the process to find PostgreSQL lost")
        _terminated(crm, process)


def _logged(crm: Processes, process: subprocess.Popen[bytes], event: str) -> bool | None:
    assert process.poll() is None, crm.output(process)[-3000:]
    return f'"event": "{event}"' in crm.output(process) or None
