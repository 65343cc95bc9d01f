"""No supervisor needed at start either: `crm api`, `crm relay` and `crm consume` started
while PostgreSQL or the broker is away wait for it as long as it takes (here longer
than the 30 s after which they used to exit 2, reporting the setting), log one line
when they find it lost and one when it is back, then work. Meanwhile an operator sees
what they wait for: the API, waiting for PostgreSQL, answers its probes (it listened on
no port), and the relay and consumers, once PostgreSQL answers, say in their health row
that they wait for the broker, which the API's `/readyz` shows (they wrote no row until
the broker answered).

Real processes on the private PostgreSQL and Kafka (`private_services`), which these
tests stop before starting the processes and start again after `OUTAGE_S`.
"""

from __future__ import annotations

import functools
import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

from bench.soak.checks import head, projection_reached, relay_reached
from tests.e2e.processes import (
    Processes,
    crm_processes,
    eventually,
    free_port,
    pipeline_env,
    wait_for_http,
)
from tests.integration.fault_support import OUTAGE_MARKS, log_events
from tests.integration.private_services import PrivateServices

pytestmark = OUTAGE_MARKS

OUTAGE_S = 40.0
"""How long the dependency stays away after the processes started: past the old limit."""


class Started:
    """The test's `crm` processes on a fresh database of the private server, with an
    admin token made while everything was up."""

    def __init__(self, crm: Processes, url: str) -> None:
        self.crm, self.url = crm, url
        crm.run("topics", "ensure", "--partitions", "1")
        out = crm.run("principals", "add", "ops", "--department", "sales", "--role", "admin")
        self.headers = {"Authorization": f"Bearer {out.strip().splitlines()[-1]}"}
        self.base = f"http://127.0.0.1:{free_port()}"

    def api(self) -> subprocess.Popen[bytes]:
        return self.crm.start("api", "--port", self.base.rsplit(":", 1)[1])

    def pipeline(self) -> list[subprocess.Popen[bytes]]:
        return [self.crm.start("relay"), self.crm.start("consume", "sales")]

    def waited_through(self, processes: list[subprocess.Popen[bytes]], dependency: str) -> None:
        """Each of `processes` logged `dependency` lost, is still running `OUTAGE_S`
        later, and has logged it lost only once."""
        eventually(lambda: all(self.logged(p, "dependency lost") for p in processes) or None,
                   what=f"every process to log {dependency} lost")  # fmt: skip
        time.sleep(OUTAGE_S)
        for process in processes:
            output = self.crm.output(process)[-3000:]
            assert process.poll() is None, output
            lost = self.logged(process, "dependency lost")
            assert [line["dependency"] for line in lost] == [dependency], output

    def works(self, processes: list[subprocess.Popen[bytes]], dependency: str) -> None:
        """A command is answered, published by the relay and applied by the consumer;
        each process logged the dependency back."""
        created = eventually(self._customer, within=120, what="a command answered")
        assert created
        assert head(self.url) >= 1
        eventually(functools.partial(relay_reached, self.url), within=120, what="the relay")
        reached = functools.partial(projection_reached, self.url, "sales")
        eventually(reached, within=120, what="the sales projection")
        for process in processes:
            back = self.logged(process, "dependency back")
            assert [line["dependency"] for line in back] == [dependency], self.crm.output(process)
            assert process.poll() is None, self.crm.output(process)[-3000:]

    def answers_while_waiting(self) -> None:
        """The API waiting for PostgreSQL answers as a running API does in an outage."""
        eventually(self._answering, what="the waiting API to answer /healthz")
        ready = httpx.get(f"{self.base}/readyz")
        assert ready.status_code == 503, ready.text
        assert "PostgreSQL" in ready.json()["checks"]["event_store"], ready.text
        body = {"name": "During the outage", "owner_department": "sales"}
        refused = httpx.post(f"{self.base}/v1/customers", json=body, headers=self.headers)
        assert refused.status_code == 503, refused.text
        assert refused.json()["type"].endswith("/event-store-unavailable"), refused.text
        assert refused.headers["Retry-After"] == "2"

    def pipeline_shown_waiting(self, dependency: str) -> None:
        """The API's /readyz names the relay and the consumer as waiting for `dependency`."""

        def shown() -> str | None:
            checks = httpx.get(f"{self.base}/readyz", headers=self.headers).json()["checks"]
            waiting = [f"{name}: {dependency} down" for name in ("relay", "consume sales")]
            return checks["pipeline"] if all(w in checks["pipeline"] for w in waiting) else None

        eventually(shown, what=f"/readyz to show the pipeline waiting for {dependency}")

    def _answering(self) -> bool | None:
        try:
            answer = httpx.get(f"{self.base}/healthz").json()
            return answer.get("waiting_for") == "postgres" or None
        except httpx.TransportError:
            return None

    def logged(self, process: subprocess.Popen[bytes], event: str) -> list[dict[str, object]]:
        return log_events(self.crm.log(process), event)

    def _customer(self) -> bool | None:
        body = {"name": "After the outage", "owner_department": "sales"}
        try:
            created = httpx.post(f"{self.base}/v1/customers", json=body, headers=self.headers)
        except httpx.TransportError:
            return None
        return created.status_code == 201 or None


@contextmanager
def started(services: PrivateServices, prefix: str, tmp_path: Path) -> Iterator[Started]:
    with services.database() as url:
        env = pipeline_env(url, services.bootstrap, prefix, tmp_path)
        with crm_processes(env, tmp_path) as crm:
            yield Started(crm, url)


@contextmanager
def away(stop: Callable[[], None], start: Callable[[], None]) -> Iterator[None]:
    stop()
    try:
        yield
    finally:
        start()


def test_processes_started_while_postgres_is_down_wait_for_it(
    private_services: PrivateServices, topic_prefix: str, tmp_path: Path
) -> None:
    with started(private_services, topic_prefix, tmp_path) as crm:
        with away(private_services.stop_postgres, private_services.start_postgres):
            api = crm.api()
            processes = [api, *crm.pipeline()]
            crm.answers_while_waiting()
            crm.waited_through(processes, "postgres")
        wait_for_http(crm.base, api)
        crm.works(processes, "postgres")


def test_processes_started_while_the_broker_is_down_wait_for_it(
    private_services: PrivateServices, topic_prefix: str, tmp_path: Path
) -> None:
    with started(private_services, topic_prefix, tmp_path) as crm:
        api = crm.api()
        wait_for_http(crm.base, api)
        with away(private_services.stop_broker, private_services.start_broker):
            processes = crm.pipeline()
            crm.pipeline_shown_waiting("kafka")
            crm.waited_through(processes, "kafka")
        crm.works(processes, "kafka")
