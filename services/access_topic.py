"""The access log on Kafka: topic `crm.access.v1`, one stored access record per message.

One partition (the records are one chained sequence, read in order), retention forever;
key = the record's position in the access log (decimal), value = the record as stored
(JSON; with the position, what the chain hashes), header `content-type:
application/json`. The relay publishes what the API
processes stored, in order and at least once: it keeps the last acknowledged position in
`crm_access_published` and starts from there.

I/O: Kafka through `consumers.kafka_io`, the access log's store.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager

import structlog

from consumers import kafka_io
from consumers.kafka_records import BrokerUnavailable
from consumers.outage import KAFKA, POSTGRES, Dependencies
from consumers.pg_pool import DATABASE_UNAVAILABLE
from services.access_log import AccessStore

log = structlog.get_logger("crm.access_log")

ACCESS_TOPIC = "crm.access.v1"
BATCH = 500
HEADERS = (("content-type", b"application/json"),)


def access_topic(prefix: str = "") -> str:
    return f"{prefix}{ACCESS_TOPIC}"


def ensure_access_topic(bootstrap: str, prefix: str) -> list[str]:
    """Create the topic if missing (one partition, retention forever); the created."""
    return kafka_io.ensure_topics(bootstrap, [access_topic(prefix)], partitions=1)


class AccessPublisher:
    def __init__(self, store: AccessStore, bootstrap: str, prefix: str) -> None:
        self.store = store
        self.topic = access_topic(prefix)
        self._bootstrap = bootstrap
        self._producer: kafka_io.Producer | None = None

    def publish_pending(self) -> int:
        """Publish the stored records not yet acknowledged; how many were sent."""
        after = self.store.published(self.topic)
        rows = self.store.records(after, BATCH)
        if not rows:
            return 0
        if self._producer is None:
            self._producer = kafka_io.Producer(self._bootstrap, client_id="crm-access-log")
        messages = [(self.topic, str(position).encode(), record) for position, record in rows]
        self._producer.confirm(self._producer.send_many(messages, HEADERS), timeout=30)
        self.store.mark_published(self.topic, rows[-1][0])
        return len(rows)

    def run(self, stop: threading.Event, interval: float = 0.5) -> None:
        """Publish until `stop`. A broker or database away is waited out, not fatal: one
        line when it is lost and one when it is back, with the relay's backoff between
        (`consumers.outage`), not a line a retry; any other failure is logged each time."""
        deps = Dependencies("access publisher")
        while not stop.is_set():
            try:
                if self.publish_pending() == BATCH:
                    continue
            except BrokerUnavailable as error:
                self.close()
                stop.wait(deps.lost(KAFKA, error))
                continue
            except DATABASE_UNAVAILABLE as error:
                stop.wait(deps.lost(POSTGRES, error))
                continue
            except Exception as error:
                log.warning("access records not published yet", error=repr(error))
                self.close()
            else:
                deps.back(KAFKA)
                deps.back(POSTGRES)
            stop.wait(interval)

    def close(self) -> None:
        if self._producer is not None:
            producer, self._producer = self._producer, None
            producer.close()


@contextmanager
def running_access_publisher(store: AccessStore, bootstrap: str, prefix: str) -> Iterator[None]:
    """Publish the access log to Kafka in a thread while the block runs (`crm relay`)."""
    stop = threading.Event()
    publisher = AccessPublisher(store, bootstrap, prefix)
    thread = threading.Thread(target=publisher.run, args=(stop,), name="crm-access-publisher")
    thread.daemon = True
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(timeout=10)
        publisher.close()
