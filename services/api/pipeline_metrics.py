"""Relay and projection gauges on the API's Prometheus registry (`app.state.metrics`).

Read at scrape time from the databases, so they describe the relay and every
`crm consume` process wherever they run. Cheap: the relay position row is created once
here, never per scrape; each scrape is a few indexed reads per projection.
I/O: PostgreSQL (relay position, event-store head), the read-model store.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from prometheus_client import CollectorRegistry
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from consumers.projection_metrics import ProjectionCollector
from consumers.readmodel_store import ReadModelStore
from consumers.relay_position import PostgresRelayPosition, relay_status

RELAY_GAUGES = {
    "crm_relay_position": ("position", "Newest event position the broker acknowledged"),
    "crm_relay_head": ("head", "Newest event position in the event store"),
    "crm_relay_lag_events": ("lag_events", "Events stored but not yet published"),
    "crm_relay_lag_seconds": ("lag_seconds", "Age of the oldest unpublished event"),
}


class RelayCollector(Collector):
    """The gauges of `consumers.relay_position.relay_metrics`, without its per-call DDL."""

    def __init__(self, runtime: Any) -> None:
        self.recorder = runtime.app.recorder
        self.positions = PostgresRelayPosition(runtime.pool)

    def collect(self) -> Iterator[GaugeMetricFamily]:
        status = relay_status(self.recorder, self.positions)
        for name, (field, text) in RELAY_GAUGES.items():
            yield GaugeMetricFamily(name, text, value=float(getattr(status, field)))


def register_pipeline_metrics(
    registry: CollectorRegistry, runtime: Any, store: ReadModelStore | None
) -> None:
    """Relay gauges in PostgreSQL mode (embedded has no relay); projection lag and
    dead letters whenever this process has a read-model store."""
    if runtime.pool is not None:
        registry.register(RelayCollector(runtime))
    if store is not None:
        registry.register(ProjectionCollector(store))
