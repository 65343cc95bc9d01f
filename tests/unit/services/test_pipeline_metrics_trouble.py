"""Per-process gauges of `/metrics` from the processes' health rows (no database: the
rows are built here; `tests/integration/test_process_health.py` stores and reads them)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.registry import Collector

from consumers.process_health import ProcessHealth
from services.api.pipeline_metrics import process_metrics


class Rows(Collector):
    def __init__(self, rows: list[ProcessHealth]) -> None:
        self.rows = rows

    def collect(self) -> Iterator[Any]:
        return process_metrics(self.rows)


def _row(process: str, trouble: str | None) -> ProcessHealth:
    return ProcessHealth(
        process=process, down=[], down_since=None, watchdog_restarts=0, writer_restarts=0,
        pid=1, updated_at=datetime.now(UTC), trouble=trouble,
    )  # fmt: skip


def test_a_process_reporting_trouble_has_its_gauge_at_one() -> None:
    registry = CollectorRegistry()
    registry.register(Rows([_row("relay", "audit signer refusing to sign: x"), _row("a", None)]))
    scraped = generate_latest(registry).decode()
    assert 'crm_process_trouble{process="relay"} 1.0' in scraped
    assert 'crm_process_trouble{process="a"} 0.0' in scraped
