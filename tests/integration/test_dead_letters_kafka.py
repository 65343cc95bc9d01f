"""Dead letters on the Kafka runner (real Kafka and PostgreSQL): an event PostgreSQL
cannot hold is a dead letter and the projection goes on (it was retried forever), and
`retry` re-applies dead letters once their cause is fixed."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import closing
from datetime import UTC, datetime
from typing import Any
from uuid import UUID, uuid4

import msgspec
import pytest

from bench.workload import Workload
from consumers.envelope import all_topics
from consumers.rebuild import build_generation, retry
from consumers.runner import ProjectionRunner
from consumers.store_postgres import PostgresStore
from domain.base import Context, DomainEvent
from domain.conversation import SatisfactionRated
from domain.customer import Customer
from domain.task import Task
from projections import PROJECTIONS
from projections.base import Change, Rows
from projections.dispatch import DispatchProjection
from tests.e2e.processes import eventually
from tests.integration.projection_support import EventLog, event_log, pg_keyring, tables_of

pytestmark = [
    pytest.mark.integration,
    pytest.mark.filterwarnings("ignore::ResourceWarning"),  # see test_runner
    pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning"),
]


@pytest.fixture
def store_and_log(pg_url: str) -> Iterator[tuple[PostgresStore, EventLog]]:
    """The read-model store, the event store and the key store, all in the test's
    database."""
    with (
        closing(PostgresStore(pg_url)) as store,
        pg_keyring(pg_url) as keyring,
        event_log(pg_url, keyring) as log,
    ):
        yield store, log


def runner(
    store: PostgresStore, name: str, log: EventLog, bootstrap: str, prefix: str, **options: Any
) -> ProjectionRunner:
    return ProjectionRunner(
        store, name, log.keyring, log.stored, bootstrap, all_topics(prefix),
        group=f"{prefix}crm.projection.{name}", **options,
    )  # fmt: skip


def nul_assignee_events() -> tuple[list[DomainEvent], UUID]:
    """Two tasks, the first assigned to a name with a NUL character (PostgreSQL text
    cannot hold one; an older event, or one from before a validation rule, may carry it),
    and the second task's id. The assignee, not a personal field: read models store
    personal fields sealed (base64 text), which PostgreSQL holds whatever they seal."""
    at = Context(
        actor="ann", actor_department="support", occurred_at=datetime.now(UTC), correlation_id="c"
    )
    customer = Customer.register(at, customer_id=uuid4(), name="Ada", owner_department="support")
    bad = Task.create(at, task_id=uuid4(), customer=customer, title="before", assignee="bea")
    good = Task.create(at, task_id=uuid4(), customer=customer, title="after", assignee="bea")
    (created,) = bad.collect_events()
    poisoned = msgspec.structs.replace(created, assignee="b\x00ea")
    return [*customer.collect_events(), poisoned, *good.collect_events()], good.id


def test_a_value_postgres_cannot_hold_is_a_dead_letter_and_the_rest_applies(
    store_and_log: tuple[PostgresStore, EventLog], kafka_bootstrap: str, topic_prefix: str
) -> None:
    store, log = store_and_log
    events, good = nul_assignee_events()
    log.publish(kafka_bootstrap, topic_prefix, events)
    consumer = runner(store, "support", log, kafka_bootstrap, topic_prefix)
    thread = threading.Thread(target=consumer.run, kwargs={"until_caught_up": True})
    thread.start()
    try:
        eventually(lambda: store.status("support").dead_letters or None, within=90, what="a letter")
        thread.join(timeout=90)
        assert not thread.is_alive()
    finally:
        consumer.stop()
        thread.join()
    tasks = tables_of(store, "support")["tasks"]
    assert [(t["task_id"], t["assignee"]) for t in tasks] == [(good, "bea")]
    letters = store.fetch(
        "SELECT event_type, error FROM {d}",
        {"d": f"support_v{store.live_generation('support')}._dead_letters"},
        {},
    )
    assert [letter["event_type"] for letter in letters] == ["TaskCreated"]
    assert letters[0]["error"].startswith("CharacterNotInRepertoire:")  # PostgreSQL's refusal
    assert store.status("support").dead_letters == 1


def failing(event: Any, rows: Rows) -> list[Change]:
    raise RuntimeError("a bug")


def test_retry_reapplies_the_runners_dead_letters_after_a_fix(
    store_and_log: tuple[PostgresStore, EventLog],
    kafka_bootstrap: str,
    topic_prefix: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    store, log = store_and_log
    events = list(Workload(seed=4).events(1500))
    answers = sum(isinstance(e, SatisfactionRated) for e in events)
    log.publish(kafka_bootstrap, topic_prefix, events)
    stats = PROJECTIONS["stats"]
    assert isinstance(stats, DispatchProjection)
    with monkeypatch.context() as broken:  # a bug, in this process: an inline writer
        kind: type[DomainEvent] = SatisfactionRated
        broken.setitem(stats.appliers, kind, failing)
        runner(store, "stats", log, kafka_bootstrap, topic_prefix, writer_process=False).run(
            until_caught_up=True
        )
    assert store.status("stats").dead_letters == answers > 0
    assert retry(store, stats, log.keyring, log.stored) == (answers, 0, 0)
    assert store.status("stats").dead_letters == 0
    clean = build_generation(store, stats, log.source(kafka_bootstrap, topic_prefix), None)
    assert tables_of(store, "stats") == tables_of(store, "stats", clean)
