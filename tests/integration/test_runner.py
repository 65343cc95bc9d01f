"""The projection runner on a real Kafka and PostgreSQL: exactly-once effects.

Every scenario (duplicates, a SIGKILLed consumer, a rebalance, a rebuild) must end
with exactly the tables of one clean replay of the same events.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from bench.workload import Workload
from consumers.envelope import all_topics
from consumers.keyring import Keyring
from consumers.readmodel_store import Status
from consumers.rebuild import build_generation, compare, rebuild
from consumers.runner import ProjectionRunner
from consumers.store_postgres import PostgresStore
from projections import PROJECTIONS
from tests.integration.projection_support import EventLog, event_log, pg_keyring, tables_of

pytestmark = [
    pytest.mark.integration,
    # kafka-python 3.0 leaves sockets of failed/closed broker connections to the GC
    # (also seen by the relay tests); our consumers and producers are all closed.
    pytest.mark.filterwarnings("ignore::ResourceWarning"),
    pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning"),
]
EVENTS = list(Workload(seed=5).events(4000))


@pytest.fixture
def store(pg_url: str) -> Iterator[PostgresStore]:
    opened = PostgresStore(pg_url)
    yield opened
    opened.close()


@pytest.fixture
def log(pg_url: str) -> Iterator[EventLog]:
    """The test database's event store, its keys there too (`crm consume` reads both)."""
    with pg_keyring(pg_url) as keyring, event_log(pg_url, keyring) as opened:
        yield opened


def runner(
    store: PostgresStore,
    name: str,
    log: EventLog,
    bootstrap: str,
    prefix: str,
    *,
    writer_process: bool = True,
    keyring: Keyring | None = None,
) -> ProjectionRunner:
    return ProjectionRunner(
        store, name, keyring or log.keyring, log.stored, bootstrap, all_topics(prefix),
        group=f"{prefix}crm.projection.{name}", max_poll_records=700,
        writer_process=writer_process,
    )  # fmt: skip


def reference(
    store: PostgresStore, name: str, log: EventLog, bootstrap: str, prefix: str
) -> dict[str, object]:
    """A clean single replay into a fresh generation (never switched to)."""
    generation = build_generation(store, PROJECTIONS[name], log.source(bootstrap, prefix), None)
    return tables_of(store, name, generation)


@pytest.mark.parametrize("writer_process", [True, False], ids=["writer-process", "inline"])
def test_duplicates_and_redelivery_apply_once(
    store: PostgresStore,
    log: EventLog,
    kafka_bootstrap: str,
    topic_prefix: str,
    writer_process: bool,
) -> None:
    def run() -> None:
        once = runner(
            store, "sales", log, kafka_bootstrap, topic_prefix, writer_process=writer_process
        )
        once.run(until_caught_up=True)

    log.publish(kafka_bootstrap, topic_prefix, EVENTS[:3000])
    run()
    log.publish(kafka_bootstrap, topic_prefix, EVENTS[2000:])  # relay re-sends
    run()
    live = tables_of(store, "sales")
    assert live == reference(store, "sales", log, kafka_bootstrap, topic_prefix)
    assert store.status("sales").dead_letters == 0


def test_a_killed_consumer_resumes_without_loss_or_double_counting(
    store: PostgresStore, log: EventLog, kafka_bootstrap: str, topic_prefix: str, pg_url: str
) -> None:
    log.publish(kafka_bootstrap, topic_prefix, EVENTS)
    env = {**os.environ, "CRM_DATABASE_URL": pg_url, "CRM_KAFKA_BOOTSTRAP": kafka_bootstrap,
           "CRM_TOPIC_PREFIX": topic_prefix, "CRM_LOG_LEVEL": "warning"}  # fmt: skip
    command = [sys.executable, "-m", "services.cli", "consume", "stats", "--until-caught-up"]
    command += ["--batch", "100"]
    process = subprocess.Popen(command, env=env)
    deadline = time.monotonic() + 60
    while store.status("stats").events == 0 and time.monotonic() < deadline:
        time.sleep(0.02)
    writers = _children(process.pid)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert writers  # its writer process, which must not outlive it
    assert _all_gone(writers, within=15)
    assert 0 < store.status("stats").events < len(EVENTS)
    assert subprocess.run(command, env=env, timeout=120, check=False).returncode == 0
    assert tables_of(store, "stats") == reference(
        store, "stats", log, kafka_bootstrap, topic_prefix
    )


def test_a_consumer_joins_the_group_of_its_topic_prefix(
    store: PostgresStore, log: EventLog, kafka_bootstrap: str, topic_prefix: str, pg_url: str
) -> None:
    """Consumer groups are broker-wide: `crm consume stats` of every prefix joined
    `crm.projection.stats`, so starting or stopping one rebalanced the others' (red team
    s33: a consumer applied nothing for 64 s, its lag shown as 0, until its watchdog)."""
    from kafka import KafkaAdminClient  # the test's own look at the broker

    log.publish(kafka_bootstrap, topic_prefix, EVENTS[:200])
    env = {**os.environ, "CRM_DATABASE_URL": pg_url, "CRM_KAFKA_BOOTSTRAP": kafka_bootstrap,
           "CRM_TOPIC_PREFIX": topic_prefix, "CRM_LOG_LEVEL": "warning"}  # fmt: skip
    command = [sys.executable, "-m", "services.cli", "consume", "stats", "--single-process"]
    process = subprocess.Popen(command, env=env)
    admin = KafkaAdminClient(bootstrap_servers=kafka_bootstrap)
    try:
        deadline = time.monotonic() + 60
        while store.status("stats").events < 200 and time.monotonic() < deadline:
            time.sleep(0.05)
        groups = {group["group_id"] for group in admin.list_groups()}
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=30)
        admin.close()
    assert store.status("stats").events == 200
    assert f"{topic_prefix}crm.projection.stats" in groups


def _children(pid: int) -> list[int]:
    return [int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]


def _all_gone(pids: list[int], within: float) -> bool:
    """True once none of `pids` runs any more (exited, or a zombie awaiting its reaper)."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        states = []
        for pid in pids:
            try:
                states.append(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0])
            except FileNotFoundError:
                continue
        if all(state == "Z" for state in states):
            return True
        time.sleep(0.1)
    return False


def test_a_rebalance_between_two_consumers_changes_nothing(
    store: PostgresStore, log: EventLog, kafka_bootstrap: str, topic_prefix: str
) -> None:
    log.publish(kafka_bootstrap, topic_prefix, EVENTS)
    first = runner(store, "shared", log, kafka_bootstrap, topic_prefix)
    thread = threading.Thread(target=first.run)
    thread.start()
    while store.status("shared").events < 500:
        time.sleep(0.01)
    second = runner(store, "shared", log, kafka_bootstrap, topic_prefix)
    second.run(until_caught_up=True)  # joins the group: partitions move between the two
    first.stop()
    thread.join()
    runner(store, "shared", log, kafka_bootstrap, topic_prefix).run(until_caught_up=True)
    assert tables_of(store, "shared") == reference(
        store, "shared", log, kafka_bootstrap, topic_prefix
    )


@pytest.mark.parametrize("name", sorted(PROJECTIONS))
def test_replay_from_zero_equals_live(
    store: PostgresStore, log: EventLog, kafka_bootstrap: str, topic_prefix: str, name: str
) -> None:
    """Live saw half the history in plaintext before later erasures destroyed keys."""
    for first in (0, 2000):
        log.publish(kafka_bootstrap, topic_prefix, EVENTS[first : first + 2000])
        runner(store, name, log, kafka_bootstrap, topic_prefix).run(until_caught_up=True)
    source = log.source(kafka_bootstrap, topic_prefix)
    live = store.live_generation(name)
    assert live is not None
    scratch = build_generation(store, PROJECTIONS[name], source, None)
    assert compare(store, PROJECTIONS[name], live, scratch) == []
    assert any(tables_of(store, name, scratch).values())


def test_crm_projections_verify_agrees_with_erasures_before_and_after_a_rebuild(
    store: PostgresStore, log: EventLog, kafka_bootstrap: str, topic_prefix: str, pg_url: str
) -> None:
    """`crm projections verify` compares the live rows with a fresh rebuild: here a rebuild
    that saw some erasures, to which the live consumer then applied the rest of history."""
    log.publish(kafka_bootstrap, topic_prefix, EVENTS[:2000])
    source = log.source(kafka_bootstrap, topic_prefix)
    rebuild(store, PROJECTIONS["shared"], source)
    log.publish(kafka_bootstrap, topic_prefix, EVENTS[2000:])
    runner(store, "shared", log, kafka_bootstrap, topic_prefix).run(until_caught_up=True)
    env = {**os.environ, "CRM_DATABASE_URL": pg_url, "CRM_KAFKA_BOOTSTRAP": kafka_bootstrap,
           "CRM_TOPIC_PREFIX": topic_prefix, "CRM_LOG_LEVEL": "warning"}  # fmt: skip
    command = [sys.executable, "-m", "services.cli", "projections", "verify", "shared"]
    done = subprocess.run(
        command, env=env, capture_output=True, text=True, timeout=300, check=False
    )
    assert done.stdout.splitlines()[-1:] == ["shared: 0 rows differ"], done.stdout + done.stderr
    assert done.returncode == 0


def _caught_up(status: Status, last: int) -> bool:
    """Every event applied: the last position reached (one partition may get there
    first), and nothing left behind the batch that wrote the status last."""
    return status.last_position >= last and status.lag == 0


def test_queries_answer_during_a_rebuild_and_from_the_new_version_after(
    store: PostgresStore, log: EventLog, kafka_bootstrap: str, topic_prefix: str
) -> None:
    log.publish(kafka_bootstrap, topic_prefix, EVENTS)
    runner(store, "support", log, kafka_bootstrap, topic_prefix).run(until_caught_up=True)
    query = "SELECT count(*) AS n FROM {t}"
    expected = store.fetch(query, {"t": "support.tasks"}, {})[0]["n"]
    answers: list[int] = []
    done = threading.Event()

    def read() -> None:
        while not done.is_set():
            answers.append(store.fetch(query, {"t": "support.tasks"}, {})[0]["n"])

    reader = threading.Thread(target=read)
    reader.start()
    old = store.live_generation("support")
    source = log.source(kafka_bootstrap, topic_prefix)
    new = rebuild(store, PROJECTIONS["support"], source)
    done.set()
    reader.join()
    assert new != old
    assert store.live_generation("support") == new
    assert answers
    assert set(answers) == {expected}  # never empty, never half-built


def test_a_live_consumer_keeps_up_through_a_rebuild_that_switches_under_it(
    store: PostgresStore, log: EventLog, kafka_bootstrap: str, topic_prefix: str, pg_url: str
) -> None:
    """The rebuild drops the generation the live consumer writes to, maybe mid-batch; the
    consumer must move to the new one and apply what is published after the switch."""
    log.publish(kafka_bootstrap, topic_prefix, EVENTS[:1500])
    with pg_keyring(pg_url) as own_keys:
        live = runner(store, "support", log, kafka_bootstrap, topic_prefix, keyring=own_keys)
        thread = threading.Thread(target=live.run)
        thread.start()
        during = threading.Thread(
            target=log.publish, args=(kafka_bootstrap, topic_prefix, EVENTS[1500:3000])
        )
        during.start()
        source = log.source(kafka_bootstrap, topic_prefix)
        rebuilt = rebuild(store, PROJECTIONS["support"], source)
        during.join()
        log.publish(kafka_bootstrap, topic_prefix, EVENTS[3000:])
        deadline = time.monotonic() + 90
        while not _caught_up(store.status("support"), len(EVENTS)):
            assert time.monotonic() < deadline, "the live consumer stopped applying events"
            time.sleep(0.1)
        live.stop()
        thread.join(timeout=60)
    assert not thread.is_alive()
    assert store.live_generation("support") == rebuilt
    assert store.status("support").last_position == len(EVENTS)
    assert tables_of(store, "support") == reference(
        store, "support", log, kafka_bootstrap, topic_prefix
    )
