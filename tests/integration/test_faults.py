"""Faults the pipeline rides out without a supervisor: `crm api`, `crm relay` and
`crm consume` run as real processes on a private PostgreSQL and Kafka
(`private_services`), which these tests stop, restart and kill.

Each test ends with the same proof: every process started is still running, every
acknowledged command is stored, and the relay and the projection have caught up.
"""

from __future__ import annotations

import functools
import gc
import os
import signal
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

from bench.soak.checks import health, missing_acks, projection_reached, relay_reached
from bench.soak.fleet import children
from bench.soak.load import CommandLoad
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


class Pipeline:
    """API, relay and consumers of one test, with an admin token and the database URL."""

    def __init__(
        self, crm: Processes, url: str, consumers: dict[str, dict[str, str]] | None = None
    ) -> None:
        self.crm, self.url = crm, url
        crm.run("topics", "ensure", "--partitions", "3")
        self.token = crm.run("principals", "add", "ops", "--department", "sales", "--role", "admin")
        self.token = self.token.strip().splitlines()[-1]
        self.base = f"http://127.0.0.1:{free_port()}"
        self.api = crm.start("api", "--port", self.base.rsplit(":", 1)[1])
        self.relay = crm.start("relay")
        consumers = consumers or {"sales": {}, "stats": {}}
        self.consumers = {
            name: crm.start("consume", name, env=env) for name, env in consumers.items()
        }
        wait_for_http(self.base, self.api)

    def all_running(self) -> None:
        for name, process, _ in self.crm.running:
            assert process.poll() is None, f"crm {name} exited ({process.returncode})"

    def caught_up(self, load: CommandLoad) -> None:
        """Every acknowledged command stored, published and applied exactly once (the
        live read model equals a replay from offset 0: `crm projections verify`)."""
        assert load.tally.gave_up == 0, load.tally
        assert missing_acks(self.url, load.tally.acks) == []
        eventually(functools.partial(relay_reached, self.url), within=120, what="the relay")
        for name in self.consumers:
            caught_up = functools.partial(projection_reached, self.url, name)
            eventually(caught_up, within=120, what=f"projection {name}")
            assert "0 rows differ" in self.crm.run("projections", "verify", name)

    def logged_once(self, process: subprocess.Popen[bytes], dependency: str) -> None:
        """`process` logged one line when `dependency` was lost and one when it was back,
        per part of it that noticed (the relay's access publisher reports its own)."""
        log = self.crm.log(process)
        lost, back = _by_part(log, "dependency lost"), _by_part(log, "dependency back")
        assert lost, log.read_text()[-3000:]
        assert set(lost.values()) == {(dependency,)}, log.read_text()[-3000:]
        assert back == lost, log.read_text()[-3000:]


def _by_part(log: Path, event: str) -> dict[object, tuple[object, ...]]:
    """The dependencies each part of a process (`process` in the line) logged `event` of."""
    parts: dict[object, tuple[object, ...]] = {}
    for line in log_events(log, event):
        parts[line["process"]] = (*parts.get(line["process"], ()), line["dependency"])
    return parts


@contextmanager
def running_pipeline(
    services: PrivateServices, prefix: str, tmp_path: Path, **consumers: dict[str, str]
) -> Iterator[Pipeline]:
    """API, relay and `consumers` (name: their own variables; default sales and stats)."""
    with services.database() as url:
        env = pipeline_env(url, services.bootstrap, prefix, tmp_path)
        with crm_processes(env, tmp_path) as crm:
            yield Pipeline(crm, url, consumers)
    gc.collect()  # kafka-python's leaked sockets, while this module's warning filters apply


@pytest.fixture
def pipeline(
    private_services: PrivateServices, topic_prefix: str, tmp_path: Path
) -> Iterator[Pipeline]:
    with running_pipeline(private_services, topic_prefix, tmp_path) as running:
        yield running


def test_a_postgres_restart_is_ridden_out(
    pipeline: Pipeline, private_services: PrivateServices
) -> None:
    processes = (pipeline.relay, *pipeline.consumers.values())

    def all_logged_lost() -> bool | None:
        """An idle process notices only at its next check (every 2 s): a restart shorter
        than that may pass it by, and then it has nothing to log."""
        lost = [log_events(pipeline.crm.log(p), "dependency lost") for p in processes]
        return all(lost) or None

    with CommandLoad(pipeline.base, pipeline.token, callers=3) as load:
        eventually(lambda: load.acked >= 30 or None, what="commands before the restart")
        private_services.stop_postgres()
        try:
            readiness = httpx.get(f"{pipeline.base}/readyz", timeout=30)
            eventually(lambda: load.tally.outcomes["503"] or None, what="a 503 in the outage")
            eventually(all_logged_lost, what="every process to log PostgreSQL lost")
        finally:
            private_services.start_postgres()
        after = load.acked + 30
        eventually(lambda: load.acked >= after or None, within=120, what="commands after")
    pipeline.all_running()
    assert (readiness.status_code, readiness.json()["status"]) == (503, "degraded")
    assert "500" not in load.tally.outcomes, load.tally.outcomes
    pipeline.caught_up(load)
    for process in processes:
        pipeline.logged_once(process, "postgres")
    assert health(pipeline.url, "relay")[0] == []


def test_a_broker_outage_is_ridden_out(
    pipeline: Pipeline, private_services: PrivateServices
) -> None:
    processes = ["relay", *(f"consume {name}" for name in pipeline.consumers)]

    def all_report(down: list[str]) -> bool | None:
        return all(health(pipeline.url, p)[0] == down for p in processes) or None

    with CommandLoad(pipeline.base, pipeline.token, callers=3) as load:
        eventually(lambda: load.acked >= 30 or None, what="commands before the outage")
        private_services.stop_broker(kill=True)
        try:
            eventually(lambda: all_report(["kafka"]), what="every process to report Kafka down")
            readiness = httpx.get(f"{pipeline.base}/readyz", timeout=30)
        finally:
            private_services.start_broker()
        eventually(lambda: all_report([]), within=120, what="every process to see Kafka back")
        after = load.acked + 30
        eventually(lambda: load.acked >= after or None, within=120, what="commands after")
    pipeline.all_running()
    assert (readiness.status_code, readiness.json()["status"]) == (200, "degraded")
    pipeline.caught_up(load)
    for process in (pipeline.relay, *pipeline.consumers.values()):
        pipeline.logged_once(process, "kafka")


def test_a_killed_writer_process_is_replaced(pipeline: Pipeline) -> None:
    consumer = pipeline.consumers["stats"]
    with CommandLoad(pipeline.base, pipeline.token, callers=3) as load:
        eventually(lambda: load.acked >= 100 or None, what="commands before the kill")
        (writer,) = children(consumer.pid)
        os.kill(writer, signal.SIGKILL)
        eventually(
            lambda: children(consumer.pid) not in ([], [writer]) or None,
            what="the consumer to start another writer process",
        )
        assert health(pipeline.url, "consume stats")[2] == 1  # counted for /metrics
        after = load.acked + 100
        eventually(lambda: load.acked >= after or None, within=120, what="commands after")
    pipeline.all_running()
    pipeline.caught_up(load)


def test_a_consumer_cut_off_from_its_coordinator_is_rebuilt_by_its_watchdog(
    private_services: PrivateServices, topic_prefix: str, tmp_path: Path
) -> None:
    """It starts while every connection to its group coordinator goes silent (a
    half-open connection: no error, no answer), so it never gets partitions and kafka-
    python waits. Its watchdog (here after 3 s) notices records waiting and nothing
    moving, and rebuilds the Kafka consumer until one reaches the coordinator."""
    cut_off = {
        "CRM_KAFKA_BOOTSTRAP": private_services.proxied_bootstrap,
        "CRM_CONSUMER_WATCHDOG_SECONDS": "3",
    }
    proxy = private_services.proxy
    with (
        running_pipeline(private_services, topic_prefix, tmp_path, stats={}) as pipeline,
        CommandLoad(pipeline.base, pipeline.token, callers=3) as load,
    ):
        eventually(lambda: load.acked >= 30 or None, what="commands before the consumer")
        proxy.cut()
        try:
            consumer = pipeline.crm.start("consume", "sales", env=cut_off)
            eventually(
                lambda: health(pipeline.url, "consume sales")[1] >= 1 or None,
                what="the watchdog to rebuild the consumer",
            )
        finally:
            proxy.restore()
        pipeline.consumers["sales"] = consumer
        after = load.acked + 30
        eventually(lambda: load.acked >= after or None, within=120, what="commands after")
        load.stop()
        pipeline.all_running()
        pipeline.caught_up(load)
        assert log_events(pipeline.crm.log(consumer), "watchdog_restart")
