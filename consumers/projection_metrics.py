"""Prometheus metrics of the read models: lag, dead letters, rejected records, progress.

A custom collector reads each projection's status at scrape time, so the numbers are
those of the database (every consumer process and the embedded follower alike),
not of whichever process serves /metrics.
"""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client.core import REGISTRY, CollectorRegistry, GaugeMetricFamily
from prometheus_client.registry import Collector

from consumers.readmodel_store import ReadModelStore


class ProjectionCollector(Collector):
    def __init__(self, store: ReadModelStore, names: list[str] | None = None) -> None:
        from projections import PROJECTIONS

        self.store = store
        self.names = names or list(PROJECTIONS)

    def collect(self) -> Iterator[GaugeMetricFamily]:
        lag = GaugeMetricFamily(
            "crm_projection_lag",
            "Records behind the end of the topics (last batch)",
            labels=["projection"],
        )
        dead = GaugeMetricFamily(
            "crm_projection_dead_letters", "Events in the dead-letter table", labels=["projection"]
        )
        rejected = GaugeMetricFamily(
            "crm_projection_rejected_records",
            "Records refused: not as the event store holds them, or out of order",
            labels=["projection"],
        )
        events = GaugeMetricFamily(
            "crm_projection_events", "Events applied to the live version", labels=["projection"]
        )
        last = GaugeMetricFamily(
            "crm_projection_last_event_timestamp_seconds",
            "occurred_at of the newest applied event", labels=["projection"],
        )  # fmt: skip
        for name in self.names:
            status = self.store.status(name)
            if status.lag is not None:
                lag.add_metric([name], status.lag)
            dead.add_metric([name], status.dead_letters)
            rejected.add_metric([name], status.rejected)
            events.add_metric([name], status.events)
            if status.last_event_at is not None:
                last.add_metric([name], status.last_event_at.timestamp())
        yield from (lag, dead, rejected, events, last)


def register_projection_metrics(
    store: ReadModelStore, registry: CollectorRegistry = REGISTRY
) -> ProjectionCollector:
    """Expose lag and DLQ size of every projection on `registry` (default: the global one)."""
    collector = ProjectionCollector(store)
    registry.register(collector)
    return collector
