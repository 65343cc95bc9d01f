"""The API process while PostgreSQL is away: it keeps answering what needs no database
(`/healthz` at once, `/readyz` saying so, everything else a 503), holds the event
loop for nobody, and is whole again once the server is back.

`crm api` runs as a real process on the private PostgreSQL (`private_services`),
which these tests stop and start. A liveness probe's timeout (`PROBE_TIMEOUT_S`) is
the bound: `/healthz` answers in about a millisecond while the loop is free, and an
orchestrator restarts a process whose probe times out, which is how an outage of the
database would turn into a restarted API.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

from services.principals import CACHE_SECONDS
from tests.e2e.processes import Processes, crm_processes, eventually, free_port, wait_for_http
from tests.integration.private_services import PrivateServices

pytestmark = pytest.mark.integration

PROBE_TIMEOUT_S = 3.0
"""What a liveness or readiness probe waits (Kubernetes' default is 1 s). Looked up on
the loop, each token the cache no longer held stalled it for the pool's 5 s wait."""


class Api:
    """One `crm api` process on a fresh database of the private server."""

    def __init__(self, crm: Processes) -> None:
        self.crm = crm
        self.base = f"http://127.0.0.1:{free_port()}"
        self.process = crm.start("api", "--port", self.base.rsplit(":", 1)[1])
        wait_for_http(self.base, self.process)

    def token(self, name: str, role: str = "admin") -> dict[str, str]:
        out = self.crm.run("principals", "add", name, "--department", "sales", "--role", role)
        return {"Authorization": f"Bearer {out.strip().splitlines()[-1]}"}

    def probe(self, path: str) -> httpx.Response:
        """`path` as a probe asks it: within `PROBE_TIMEOUT_S` or not at all."""
        return httpx.get(f"{self.base}{path}", timeout=PROBE_TIMEOUT_S)

    def customer(self, headers: dict[str, str], name: str) -> str:
        body = {"name": name, "owner_department": "sales"}
        created = httpx.post(f"{self.base}/v1/customers", json=body, headers=headers, timeout=30)
        assert created.status_code == 201, created.text
        return str(created.json()["id"])


@contextmanager
def running_api(services: PrivateServices, tmp_path: Path) -> Iterator[Api]:
    with services.database() as url:
        env = {"CRM_DATABASE_URL": url, "CRM_DATA_DIR": str(tmp_path / "data")}
        with crm_processes(env, tmp_path) as crm:
            api = Api(crm)
            yield api
            assert api.process.poll() is None, "crm api exited"


@contextmanager
def postgres_down(services: PrivateServices) -> Iterator[None]:
    services.stop_postgres()
    try:
        yield
    finally:
        services.start_postgres()


def test_tokens_looked_up_in_an_outage_leave_the_probes_answering(
    private_services: PrivateServices, tmp_path: Path
) -> None:
    with running_api(private_services, tmp_path) as api:
        callers = [api.token(f"caller-{n}") for n in range(4)]  # none of them cached yet
        ping = f"{api.base}/v1/ping"
        with postgres_down(private_services), ThreadPoolExecutor(len(callers)) as pool:
            pings = [pool.submit(httpx.get, ping, headers=h, timeout=60) for h in callers]
            time.sleep(0.5)  # their tokens are being looked up
            alive = [api.probe("/healthz").status_code for _ in range(3)]
            ready = api.probe("/readyz")
            refused = [p.result().status_code for p in pings]
        assert alive == [200, 200, 200]
        assert (ready.status_code, ready.json()["status"]) == (503, "degraded")
        assert refused == [503] * len(callers)
        back = eventually(
            lambda: httpx.get(ping, headers=callers[0], timeout=30).is_success or None,
            within=60,
            what="a token looked up once PostgreSQL is back",
        )
        assert back


def test_an_event_stream_opened_in_an_outage_leaves_the_probes_answering(
    private_services: PrivateServices, tmp_path: Path
) -> None:
    """Its token still cached, the stream reads the store's head as it opens."""
    with running_api(private_services, tmp_path) as api:
        admin = api.token("admin")
        assert httpx.get(f"{api.base}/v1/ping", headers=admin).is_success  # cached from now
        cached_at = time.monotonic()
        with postgres_down(private_services), ThreadPoolExecutor(1) as pool:
            stream = f"{api.base}/v1/events/stream"
            opened = pool.submit(httpx.get, stream, headers=admin, timeout=60)
            time.sleep(0.5)
            assert time.monotonic() - cached_at < CACHE_SECONDS - 1, "the token left the cache"
            alive = [api.probe("/healthz").status_code for _ in range(3)]
            assert opened.result().status_code == 503
        assert alive == [200, 200, 200]


def test_an_open_event_stream_rides_out_an_outage(
    private_services: PrivateServices, tmp_path: Path
) -> None:
    """An agent's stream (no history: a new stream starts at the head, and EventSource
    gives up on a 503) delivers what is stored after the outage on the same connection."""
    with running_api(private_services, tmp_path) as api:
        agent, admin = api.token("agent", role="agent"), api.token("admin")
        url = f"{api.base}/v1/events/stream?department=sales"
        timeout = httpx.Timeout(30, read=120)
        with httpx.stream("GET", url, headers=agent, timeout=timeout) as stream:
            assert stream.status_code == 200
            events = (json.loads(line[5:]) for line in stream.iter_lines() if line[:5] == "data:")
            before = api.customer(admin, "Before")
            assert next(events)["originator_id"] == before
            with postgres_down(private_services):
                time.sleep(3 * CACHE_SECONDS)  # the token left the cache; reads fail
            after = eventually(
                lambda: _stored_customer(api, admin), within=60, what="a command after"
            )
            assert next(events)["originator_id"] == after
        assert api.process.poll() is None


def _stored_customer(api: Api, headers: dict[str, str]) -> str | None:
    body = {"name": "After", "owner_department": "sales"}
    created = httpx.post(f"{api.base}/v1/customers", json=body, headers=headers, timeout=30)
    return str(created.json()["id"]) if created.status_code == 201 else None
