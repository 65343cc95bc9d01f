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

import pytest

from bench.workload import Workload
from consumers.envelope import all_topics
from consumers.keyring import Keyring
from consumers.rebuild import Source, build_generation, compare, rebuild
from consumers.runner import ProjectionRunner
from consumers.store_postgres import PostgresStore
from projections import PROJECTIONS
from tests.integration.projection_support import pg_keyring, publish, tables_of

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
def keyring(pg_url: str) -> Iterator[Keyring]:
    with pg_keyring(pg_url) as ring:
        yield ring


def runner(
    store: PostgresStore, name: str, keyring: Keyring, bootstrap: str, prefix: str
) -> ProjectionRunner:
    return ProjectionRunner(
        store, name, keyring, bootstrap, all_topics(prefix),
        group=f"{prefix}crm.projection.{name}", max_poll_records=700,
    )  # fmt: skip


def reference(
    store: PostgresStore, name: str, keyring: Keyring, bootstrap: str, prefix: str
) -> dict[str, object]:
    """A clean single replay into a fresh generation (never switched to)."""
    source = Source(bootstrap, all_topics(prefix), keyring)
    generation = build_generation(store, PROJECTIONS[name], source, None)
    return tables_of(store, name, generation)


def test_duplicates_and_redelivery_apply_once(
    store: PostgresStore, keyring: Keyring, kafka_bootstrap: str, topic_prefix: str
) -> None:
    publish(kafka_bootstrap, topic_prefix, EVENTS[:3000], keyring)
    runner(store, "sales", keyring, kafka_bootstrap, topic_prefix).run(until_caught_up=True)
    publish(kafka_bootstrap, topic_prefix, EVENTS[2000:], keyring, first=2001)  # relay re-sends
    runner(store, "sales", keyring, kafka_bootstrap, topic_prefix).run(until_caught_up=True)
    live = tables_of(store, "sales")
    assert live == reference(store, "sales", keyring, kafka_bootstrap, topic_prefix)
    assert store.status("sales").dead_letters == 0


def test_a_killed_consumer_resumes_without_loss_or_double_counting(
    store: PostgresStore, keyring: Keyring, kafka_bootstrap: str, topic_prefix: str, pg_url: str
) -> None:
    publish(kafka_bootstrap, topic_prefix, EVENTS, keyring)
    env = {**os.environ, "CRM_DATABASE_URL": pg_url, "CRM_KAFKA_BOOTSTRAP": kafka_bootstrap,
           "CRM_TOPIC_PREFIX": topic_prefix, "CRM_LOG_LEVEL": "warning"}  # fmt: skip
    command = [sys.executable, "-m", "services.cli", "consume", "stats", "--until-caught-up"]
    command += ["--batch", "100"]
    process = subprocess.Popen(command, env=env)
    deadline = time.monotonic() + 60
    while store.status("stats").events == 0 and time.monotonic() < deadline:
        time.sleep(0.02)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert 0 < store.status("stats").events < len(EVENTS)
    assert subprocess.run(command, env=env, timeout=120, check=False).returncode == 0
    assert tables_of(store, "stats") == reference(
        store, "stats", keyring, kafka_bootstrap, topic_prefix
    )


def test_a_rebalance_between_two_consumers_changes_nothing(
    store: PostgresStore, keyring: Keyring, kafka_bootstrap: str, topic_prefix: str
) -> None:
    publish(kafka_bootstrap, topic_prefix, EVENTS, keyring)
    first = runner(store, "shared", keyring, kafka_bootstrap, topic_prefix)
    thread = threading.Thread(target=first.run)
    thread.start()
    while store.status("shared").events < 500:
        time.sleep(0.01)
    second = runner(store, "shared", keyring, kafka_bootstrap, topic_prefix)
    second.run(until_caught_up=True)  # joins the group: partitions move between the two
    first.stop()
    thread.join()
    runner(store, "shared", keyring, kafka_bootstrap, topic_prefix).run(until_caught_up=True)
    assert tables_of(store, "shared") == reference(
        store, "shared", keyring, kafka_bootstrap, topic_prefix
    )


@pytest.mark.parametrize("name", sorted(PROJECTIONS))
def test_replay_from_zero_equals_live(
    store: PostgresStore, keyring: Keyring, kafka_bootstrap: str, topic_prefix: str, name: str
) -> None:
    """Live saw half the history in plaintext before later erasures destroyed keys."""
    for first in (0, 2000):
        publish(kafka_bootstrap, topic_prefix, EVENTS[first : first + 2000], keyring, first + 1)
        runner(store, name, keyring, kafka_bootstrap, topic_prefix).run(until_caught_up=True)
    source = Source(kafka_bootstrap, all_topics(topic_prefix), keyring)
    live = store.live_generation(name)
    assert live is not None
    scratch = build_generation(store, PROJECTIONS[name], source, None)
    assert compare(store, PROJECTIONS[name], live, scratch) == []
    assert any(tables_of(store, name, scratch).values())


def test_queries_answer_during_a_rebuild_and_from_the_new_version_after(
    store: PostgresStore, keyring: Keyring, kafka_bootstrap: str, topic_prefix: str
) -> None:
    publish(kafka_bootstrap, topic_prefix, EVENTS, keyring)
    runner(store, "support", keyring, kafka_bootstrap, topic_prefix).run(until_caught_up=True)
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
    source = Source(kafka_bootstrap, all_topics(topic_prefix), keyring)
    new = rebuild(store, PROJECTIONS["support"], source)
    done.set()
    reader.join()
    assert new != old
    assert store.live_generation("support") == new
    assert answers
    assert set(answers) == {expected}  # never empty, never half-built
