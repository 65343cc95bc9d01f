"""The relay's access publisher rides out its store going away: it keeps trying, and says
so in one line when the store is lost and one when it is back, as the relay does for the
events (`consumers.outage`), not a line at every attempt."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import psycopg
import structlog

from services.access_log_store import SqliteAccessStore
from services.access_topic import AccessPublisher


class AwayStore(SqliteAccessStore):
    """The SQLite store, unreachable for its first `away` questions (as PostgreSQL is
    through a restart); the access log it holds is empty, so nothing goes to Kafka."""

    def __init__(self, path: Path, away: int) -> None:
        super().__init__(path)
        self.away = away
        self.asked = 0

    def published(self, topic: str) -> int:
        self.asked += 1
        if self.asked <= self.away:
            raise psycopg.OperationalError("connection refused")
        return super().published(topic)


def test_a_store_away_is_one_line_lost_and_one_back(tmp_path: Path) -> None:
    store = AwayStore(tmp_path / "access.db", away=4)
    publisher = AccessPublisher(store, "127.0.0.1:9", "t.")  # no broker: never reached
    stop = threading.Event()
    with structlog.testing.capture_logs() as lines:
        thread = threading.Thread(target=publisher.run, args=(stop, 0.01))
        thread.start()
        deadline = time.monotonic() + 60
        while store.asked <= store.away + 1:  # back, and asked once more after it
            assert time.monotonic() < deadline, "the publisher stopped asking its store"
            time.sleep(0.01)
        stop.set()
        thread.join()
    outage = [(line["event"], line["dependency"]) for line in lines if "dependency" in line]
    assert outage == [("dependency lost", "postgres"), ("dependency back", "postgres")]
    store.close()
