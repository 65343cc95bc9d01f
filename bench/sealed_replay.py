"""Projection replay with sealed read models, against opening the fields in the consumer.

Before read models stored personal fields sealed, each consumer's reader opened the
personal fields its projection stored (`OPENED_BEFORE`: the projections'
`personal_inputs` of then) and the writer stored them in plaintext. The runner still
honours `personal_inputs` (they are merely empty now), so the baseline is no estimate:
the same `ProjectionRunner` as `crm consume` (reader in this process, writer in its
child process) replays the same records with those fields opened before the hand-over
(`OpeningRunner`). Search terms are derived in both runs (search came with sealing;
keeping them in both isolates the opening).

Each projection that opened anything replays both ways, each into a fresh generation
(the baseline first for every other projection, the other way round for the rest: the
machine drifts). Reported per run: events/s (start-up included; `steady_events_per_s`
from the first committed batch to the last), and CPU milliseconds per 1,000 events of the
reader (this process, start-up included) and of the writer (its child, from `RUSAGE_CHILDREN`): on a
shared machine CPU per event is the steadier figure.

I/O: Kafka (fresh topics under a prefix, deleted afterwards) and a fresh database.
"""

from __future__ import annotations

import dataclasses
import resource
import time
import uuid
from typing import Any

from psycopg_pool import ConnectionPool

from bench.bench_projections import forget, steady_rate
from bench.databases import fresh_database
from bench.replay_data import copy_keys, publish
from consumers import kafka_io
from consumers.envelope import all_topics
from consumers.kafka_io import TopicConsumer
from consumers.key_stores import PostgresKeyStore
from consumers.keyring import Keyring
from consumers.runner import Polled, ProjectionRunner
from consumers.store_postgres import PostgresStore
from projections.base import Projection, every_personal_field
from projections.dispatch import DispatchProjection
from services.bootstrap import as_stored
from services.event_store import open_event_store

OPENED_BEFORE = {
    "sales": frozenset({"name", "email", "phone", "address", "title"}),
    "support": frozenset({"subject", "title"}),
    "marketing": frozenset({"email"}),
    "shared": every_personal_field(),
}
"""What each projection's reader opened before read models were sealed (`stats`: none)."""


@dataclasses.dataclass
class OpeningRunner(ProjectionRunner):
    """`crm consume`'s runner whose reader opens `opened` fields of every event first."""

    opened: frozenset[str] = frozenset()

    def _fetch(self, consumer: TopicConsumer, projection: Projection) -> Polled:
        assert isinstance(projection, DispatchProjection)
        inputs = dataclasses.replace(projection, personal_inputs=self.opened)
        return super()._fetch(consumer, inputs)


def replay(
    store: PostgresStore, keys: ConnectionPool, name: str, opened: frozenset[str], **kafka: Any
) -> dict[str, Any]:
    """Replay every record into a fresh generation of `name`; rate and CPU per event."""
    batches: list[tuple[float, int]] = []
    runner = OpeningRunner(
        store, name, Keyring(PostgresKeyStore(keys)), kafka["stored"], kafka["bootstrap"],
        kafka["topics"],
        group=f"bench.sealed.{uuid.uuid4().hex[:8]}", opened=opened,
        on_batch=lambda written: batches.append((time.perf_counter(), written.events)),
    )  # fmt: skip
    cpu, children, started = time.process_time(), _children_cpu(), time.perf_counter()
    runner.run(until_caught_up=True)
    seconds = time.perf_counter() - started
    reader, writer = time.process_time() - cpu, _children_cpu() - children
    thousands = kafka["events"] / 1000
    return {
        "events_per_s": round(kafka["events"] / seconds),
        **steady_rate(batches, started),
        "reader_cpu_ms_per_1000": round(reader * 1000 / thousands, 1),
        "writer_cpu_ms_per_1000": round(writer * 1000 / thousands, 1),
    }


def compared(now: dict[str, Any], before: dict[str, Any]) -> dict[str, Any]:
    """Both runs and how `now` compares: its rate over the baseline's, and its reader's
    and writer's CPU per event over the baseline's."""
    ratios = {
        "ratio_events_per_s": now["events_per_s"] / before["events_per_s"],
        "ratio_reader_cpu": now["reader_cpu_ms_per_1000"] / before["reader_cpu_ms_per_1000"],
        "ratio_writer_cpu": now["writer_cpu_ms_per_1000"] / before["writer_cpu_ms_per_1000"],
    }
    return {"sealed": now, "opening_before": before} | {k: round(v, 3) for k, v in ratios.items()}


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def run(database_url: str, bootstrap: str, events: int) -> dict[str, Any]:
    """Publish `events` of the seeded workload, then replay each projection both ways."""
    prefix = f"bench{uuid.uuid4().hex[:8]}."
    kafka = {"bootstrap": bootstrap, "topics": all_topics(prefix), "events": events}
    figures: dict[str, Any] = {"events": events}
    with fresh_database(database_url) as url, ConnectionPool(url, open=True) as keys:
        copy_keys(publish(bootstrap, prefix, events, url), keys)
        store, app = PostgresStore(url), open_event_store(url, None)
        kafka["stored"] = as_stored(app, keys)  # what the runner checks records against
        try:
            for turn, (name, opened) in enumerate(OPENED_BEFORE.items()):
                ways = {"now": frozenset[str](), "before": opened}
                runs = {}
                for way in sorted(ways, reverse=turn % 2 == 1):  # turn by turn, each first
                    runs[way] = replay(store, keys, name, ways[way], **kafka)
                    forget(url, name)
                figures[name] = compared(runs["now"], runs["before"])
                print(name, figures[name], flush=True)
        finally:
            store.close()
            app.close()
    kafka_io.delete_topics(bootstrap, all_topics(prefix))
    return figures
