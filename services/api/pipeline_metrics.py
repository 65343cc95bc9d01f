"""Relay, projection and health gauges on the API's Prometheus registry (`app.state.metrics`).

Read at scrape time from the databases, so they describe the relay and every
`crm consume` process wherever they run. Cheap: the relay position row is created once
here, never per scrape; each scrape is a few indexed reads per projection. While the
event store is unreachable the database gauges are left out (a scrape must not wait on
a dead server) and the health gauges say so: `crm_dependency_up`, `crm_degraded`.
The audit signer's counts are those of a signer in this process (`crm run`); how far
checkpoints lag the log is read from the store, wherever the signer runs.
I/O: PostgreSQL (relay position, event-store head, process health), the read-model store,
the event store's checkpoints.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from prometheus_client import CollectorRegistry
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from consumers.pg_lock_wait import LockWaitTimedOut
from consumers.pg_pool import DATABASE_UNAVAILABLE
from consumers.process_health import ProcessHealth, read_health
from consumers.projection_metrics import ProjectionCollector
from consumers.readmodel_store import ReadModelStore
from consumers.relay_position import PostgresRelayPosition, relay_status
from services.api.readiness import DependencyProbe, SignerWatch
from services.signer_status import running_signers

_NO_ANSWER: tuple[type[Exception], ...] = (TimeoutError, LockWaitTimedOut, *DATABASE_UNAVAILABLE)
"""A store's gauges are left out of a scrape that meets these (`DependencyProbe.ask`);
a lock held on the relay's position row too (`PostgresRelayPosition` waits a bounded time)."""

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


class WhileStoreUp(Collector):
    """`collector`'s metrics, left out while the event store does not answer."""

    def __init__(self, collector: Collector, probe: DependencyProbe) -> None:
        self.collector, self.probe = collector, probe

    def collect(self) -> Iterator[Any]:
        if self.probe.event_store() is not None:
            return
        try:
            metrics = self.probe.ask(type(self.collector).__name__, self._collected)
        except _NO_ANSWER:
            return
        yield from metrics

    def _collected(self) -> list[Any]:
        return list(self.collector.collect())


class HealthCollector(Collector):
    """Which dependencies are down, for the API itself and for each pipeline process."""

    def __init__(self, runtime: Any, probe: DependencyProbe) -> None:
        self.runtime, self.probe = runtime, probe

    def collect(self) -> Iterator[Any]:
        up = GaugeMetricFamily(
            "crm_dependency_up", "1 when the API reaches the dependency", labels=["dependency"]
        )
        own = {"event_store": self.probe.event_store()}
        if not self.runtime.settings.embedded:
            own["kafka"] = self.probe.kafka()
        for name, problem in own.items():
            up.add_metric([name], 0.0 if problem else 1.0)
        processes = self._processes() if own["event_store"] is None else []
        degraded = any(own.values()) or any(p.down or p.trouble for p in processes)
        yield up
        yield GaugeMetricFamily("crm_degraded", "1 while any dependency is down", value=degraded)
        yield from process_metrics(processes)

    def _processes(self) -> list[ProcessHealth]:
        if self.runtime.pool is None:
            return []
        try:
            return read_health(self.runtime.pool)
        except DATABASE_UNAVAILABLE:
            return []


def process_metrics(processes: list[ProcessHealth]) -> Iterator[Any]:
    """Per relay/consumer process: dependencies it reports down, other trouble (the
    relay's audit signer), and its restarts."""
    down = GaugeMetricFamily(
        "crm_process_dependency_down", "1 while the process reports the dependency down",
        labels=["process", "dependency"],
    )  # fmt: skip
    trouble = GaugeMetricFamily(
        "crm_process_trouble", "1 while the process reports trouble beyond its "
        "dependencies (the relay's audit signer refusing or failing)", labels=["process"],
    )  # fmt: skip
    watchdog = CounterMetricFamily(
        "crm_watchdog_restarts", "Kafka consumers rebuilt by the consumer's watchdog",
        labels=["process"],
    )  # fmt: skip
    writer = CounterMetricFamily(
        "crm_writer_restarts", "Projection writer processes started again after dying",
        labels=["process"],
    )  # fmt: skip
    for p in processes:
        for dependency in p.down:
            down.add_metric([p.process, dependency], 1.0)
        trouble.add_metric([p.process], float(p.trouble is not None))
        watchdog.add_metric([p.process], p.watchdog_restarts)
        writer.add_metric([p.process], p.writer_restarts)
    yield from (down, trouble, watchdog, writer)


class SignerCollector(Collector):
    """The audit signer: this process's signers' counts, and (while the store answers)
    how long and how far the newest checkpoint has been behind the log."""

    def __init__(self, watch: SignerWatch, probe: DependencyProbe) -> None:
        self.watch, self.probe = watch, probe

    def collect(self) -> Iterator[Any]:
        signers = running_signers()
        for name, field, text in SIGNER_COUNTS:
            yield CounterMetricFamily(name, text, value=sum(getattr(s, field) for s in signers))
        troubled = any(s.trouble() is not None for s in signers)
        yield GaugeMetricFamily(
            "crm_audit_signer_trouble", "1 while a signer in this process refuses or keeps "
            "failing", value=float(troubled),
        )  # fmt: skip
        if self.probe.event_store() is not None:
            return
        try:
            (behind, waited), stale = self.probe.ask("audit_unsigned", self._unsigned)
        except _NO_ANSWER:
            return
        yield GaugeMetricFamily("crm_audit_unsigned_positions", "Positions after the newest "
                                "checkpoint", value=float(behind))  # fmt: skip
        yield GaugeMetricFamily("crm_audit_unsigned_seconds", "How long the newest checkpoint "
                                "has been behind the log", value=waited)  # fmt: skip
        yield GaugeMetricFamily("crm_audit_signer_stale", "1 while nothing is signed though the"
                                " log grows, or the newest checkpoint does not decode",
                                value=float(stale))  # fmt: skip

    def _unsigned(self) -> tuple[tuple[int, float], bool]:
        return self.watch.unsigned(), self.watch.stale() is not None


SIGNER_COUNTS = (
    ("crm_audit_checkpoints_signed", "signed", "Checkpoints signed by this process"),
    ("crm_audit_checkpoint_refusals", "refusals", "Signing attempts refused (tampering "
     "suspected: see the log)"),
    ("crm_audit_checkpoint_failures", "failures", "Signing attempts that failed otherwise"),
)  # fmt: skip


def register_pipeline_metrics(
    registry: CollectorRegistry, runtime: Any, store: ReadModelStore | None, probe: DependencyProbe
) -> None:
    """Health gauges always; relay gauges in PostgreSQL mode (embedded has no relay);
    projection lag and dead letters whenever this process has a read-model store; the
    audit signer's whenever the store is chained (not the in-memory one)."""
    registry.register(HealthCollector(runtime, probe))
    if runtime.pool is not None:
        registry.register(WhileStoreUp(RelayCollector(runtime), probe))
    if store is not None:
        registry.register(WhileStoreUp(ProjectionCollector(store), probe))
    if (watch := SignerWatch.of(runtime)) is not None:
        registry.register(SignerCollector(watch, probe))
