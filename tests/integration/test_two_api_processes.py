"""Two `crm api` processes on one PostgreSQL, nothing else shared: concurrent commands
through both (creations, and changes of the same customers and conversations from
both sides, so races are lost and decided again) leave a log with every acknowledged
command at the position it was acknowledged with, no event twice, no event that was
not acknowledged, every aggregate's versions 1..n, and positions 1..N without a gap
(a lost race is refused before a position is drawn). Each process keeps its own group
commit and caches; the event store's table lock and unique key are the only
coordination. Reads through either process then answer the same current state."""

from __future__ import annotations

from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest

from tests.e2e.processes import crm_processes, free_port, wait_for_http

ROUNDS = 30
WORKERS = 12


@pytest.mark.parametrize("server", ["uvicorn", "granian"])
def test_two_api_processes_share_one_log(pg_url: str, tmp_path: Path, server: str) -> None:
    env = {"CRM_DATABASE_URL": pg_url, "CRM_DATA_DIR": str(tmp_path / "data")}
    with crm_processes(env, tmp_path) as crm:
        token = crm.run("principals", "add", "svc", "--department", "sales", "--role", "service")
        bases = []
        for _ in range(2):
            port = free_port()
            process = crm.start("api", "--port", str(port), "--server", server)
            bases.append(f"http://127.0.0.1:{port}")
            wait_for_http(bases[-1], process)
        headers = {"Authorization": f"Bearer {token.strip().splitlines()[-1]}"}
        acknowledged = _workload(bases, headers)
        reads = [_customers(base, headers, acknowledged) for base in bases]

    log = _log(pg_url)
    assert [position for position, _, _ in log] == list(range(1, len(log) + 1))  # gap-free
    assert Counter((str(i), v) for _, i, v in log).most_common(1)[0][1] == 1  # no duplicate
    stored = {(str(i), v): position for position, i, v in log}
    assert stored == {(a["id"], a["version"]): a["position"] for a in acknowledged}
    versions: dict[str, list[int]] = {}
    for _, aggregate, version in log:
        versions.setdefault(str(aggregate), []).append(version)
    assert all(v == list(range(1, len(v) + 1)) for v in versions.values())
    assert reads[0] == reads[1]  # both processes read the same current state


def _workload(bases: list[str], headers: dict[str, str]) -> list[dict[str, Any]]:
    """Customers and conversations made through both processes, then changed
    concurrently through both; every answer (id, version, position)."""
    with httpx.Client(headers=headers, timeout=60) as http:
        customers = [_register(http, base, f"C{n}") for n, base in _each(bases, 4)]
        opened = [
            _ok(http.post(f"{base}/v1/conversations", json=_conversation(customer["id"])))
            for (_, base), customer in zip(_each(bases, 4), customers, strict=True)
        ]

        def commands(worker: int) -> list[dict[str, Any]]:
            answers = []
            for n in range(ROUNDS):
                base = bases[(worker + n) % 2]  # all workers on the same aggregates in a
                customer = customers[n % len(customers)]["id"]  # round, half through each
                conversation = opened[n % len(opened)]["id"]  # process: races are lost
                company = {"company": f"{worker}-{n}"}
                message = {"direction": "inbound", "author": "a", "content": f"m{worker}-{n}"}
                answers += [
                    _ok(http.patch(f"{base}/v1/customers/{customer}", json=company)),
                    _ok(
                        http.post(f"{base}/v1/conversations/{conversation}/messages", json=message)
                    ),
                ]
                if n % 10 == 0:
                    answers.append(_register(http, base, f"N{worker}-{n}"))
            return answers

        with ThreadPoolExecutor(WORKERS) as pool:
            changed = [a for answers in pool.map(commands, range(WORKERS)) for a in answers]
    return customers + opened + changed


def _register(http: httpx.Client, base: str, name: str) -> dict[str, Any]:
    return _ok(http.post(f"{base}/v1/customers", json={"name": name}))


def _conversation(customer: str) -> dict[str, str]:
    return {"customer_id": customer, "channel": "phone", "subject": "S"}


def _each(bases: list[str], count: int) -> list[tuple[int, str]]:
    return [(n, bases[n % 2]) for n in range(count)]


def _ok(response: httpx.Response) -> dict[str, Any]:
    assert response.status_code in (200, 201), response.text
    answer: dict[str, Any] = response.json()
    return answer


def _customers(
    base: str, headers: dict[str, str], acknowledged: list[dict[str, Any]]
) -> list[tuple[str, int, str | None]]:
    """Every customer as this process reads it now: (id, version, company)."""
    ids = sorted({a["id"] for a in acknowledged if "message_id" not in a})
    found = []
    for aggregate in ids:
        answer = httpx.get(f"{base}/v1/customers/{aggregate}", headers=headers, timeout=30)
        if answer.status_code == 200:
            body = answer.json()
            found.append((aggregate, body["version"], body["company"]))
    return found


def _log(url: str) -> list[tuple[int, Any, int]]:
    with psycopg.connect(url) as conn:
        rows = conn.execute(
            "SELECT notification_id, originator_id, originator_version FROM crm_events"
            " ORDER BY notification_id"
        ).fetchall()
    return [(row[0], row[1], row[2]) for row in rows]
