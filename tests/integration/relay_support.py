"""Shared pieces of the relay tests: a concurrent event writer and a topic reader."""

from __future__ import annotations

import threading
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from uuid import UUID, uuid4

from psycopg_pool import ConnectionPool

from consumers.envelope import all_topics, from_cloudevent
from consumers.kafka_io import Producer, ensure_topics, read_all
from consumers.relay import Relay
from consumers.relay_position import PostgresRelayPosition
from consumers.relay_wakeup import wakeup_for
from domain.base import Context
from domain.customer import Customer
from services.bootstrap import require_kafka
from services.event_store import CrmApplication
from services.settings import load_settings


def ctx() -> Context:
    return Context(
        actor="writer",
        actor_department="sales",
        occurred_at=datetime.now(UTC),
        correlation_id=str(uuid4()),
    )


def write_customers(
    app: CrmApplication, customers: int, versions: int, per_save: int = 5
) -> dict[UUID, int]:
    """`customers` aggregates with `versions` events each, saved `per_save` at a time,
    interleaved so that consecutive saves touch different aggregates."""
    aggregates = [
        Customer.register(ctx(), customer_id=uuid4(), name="N", owner_department="sales")
        for _ in range(customers)
    ]
    for version in range(1, versions + 1):
        for start in range(0, customers, per_save):
            chunk = aggregates[start : start + per_save]
            if version > 1:
                for customer in chunk:
                    customer.tag(ctx(), f"tag{version}")
            app.record(*chunk)
    return {customer.id: versions for customer in aggregates}


def write_concurrently(
    app: CrmApplication, threads: int, customers: int, versions: int
) -> dict[UUID, int]:
    """Run `write_customers` in `threads` threads; every aggregate's final version."""
    results: list[dict[UUID, int]] = []
    errors: list[BaseException] = []

    def work() -> None:
        try:
            results.append(write_customers(app, customers, versions))
        except BaseException as error:  # surfaced in the test thread below
            errors.append(error)

    workers = [threading.Thread(target=work) for _ in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    assert not errors, errors
    return {key: value for result in results for key, value in result.items()}


def published_versions(bootstrap: str, prefix: str) -> dict[UUID, list[int]]:
    """Per aggregate, the versions found on the topics, in partition order."""
    seen: dict[UUID, list[int]] = defaultdict(list)
    for record in read_all(bootstrap, all_topics(prefix)):
        event, _ = from_cloudevent(record.value)
        assert record.key == str(event.originator_id).encode()
        seen[event.originator_id].append(event.originator_version)
    return dict(seen)


def assert_complete_in_order(
    expected: dict[UUID, int], seen: dict[UUID, list[int]], *, duplicates_allowed: bool
) -> None:
    """Every version 1..n of every aggregate, first occurrences in order."""
    assert set(seen) == set(expected)
    for aggregate_id, last in expected.items():
        versions = seen[aggregate_id]
        firsts = list(dict.fromkeys(versions))
        assert firsts == list(range(1, last + 1)), (aggregate_id, versions)
        if not duplicates_allowed:
            assert versions == firsts, (aggregate_id, versions)


def wait_until(condition: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out after {timeout}s waiting for {what}"
        time.sleep(0.1)


@contextmanager
def running_relay(
    app: CrmApplication, pg_url: str, bootstrap: str, prefix: str
) -> Iterator[PostgresRelayPosition]:
    """A relay following the log in a thread, stopped and closed on exit."""
    # another test may be restarting the broker
    require_kafka(load_settings({"CRM_KAFKA_BOOTSTRAP": bootstrap}), timeout=120)
    ensure_topics(bootstrap, all_topics(prefix), partitions=3)
    pool = ConnectionPool(pg_url, min_size=1, max_size=2, open=True)
    positions = PostgresRelayPosition(pool)
    relay = Relay(
        app.recorder,
        lambda: Producer(bootstrap, client_id="test-relay"),
        positions,
        topic_prefix=prefix,
        wakeup=wakeup_for(app.recorder, pg_url),
    )
    stop = threading.Event()
    thread = threading.Thread(target=relay.run, args=(stop,), kwargs={"idle_wait": 0.2})
    thread.start()
    try:
        yield positions
    finally:
        stop.set()
        thread.join(timeout=60)
        relay.close()
        pool.close()
