"""The soak's faults, one after another, each timed until the pipeline has recovered.

Recovered means: everything stored before the fault has been published by the relay
and applied by every projection, and the API has acknowledged a new command since
the fault (the load never stops). The time is counted from the moment the fault is
injected; for a dependency stopped and started again, the report also gives how long
it was down, so the recovery after it came back is `recovered_s - down_s`.

I/O: through the fleet (SIGKILL), the service scripts, and `bench.soak.checks`.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import psycopg

from bench.soak import checks
from bench.soak.fleet import Fleet
from bench.soak.load import CommandLoad
from bench.soak.services import ServiceScripts

RECOVERY_LIMIT_S = 300.0
"""A fault not recovered from by then is reported as not recovered (the soak fails)."""

Inject = Callable[[], float | None]
"""Does the damage; how long a dependency was down, if one was."""


@dataclass(frozen=True)
class Recovery:
    fault: str
    down_s: float | None
    recovered_s: float | None
    """None: not recovered within `RECOVERY_LIMIT_S`."""


@dataclass(frozen=True)
class Pace:
    """How long the broker and PostgreSQL stay down, and the load between faults."""

    broker_down_s: float
    postgres_down_s: float
    between_s: float


def schedule(fleet: Fleet, scripts: ServiceScripts, pace: Pace) -> list[tuple[str, Inject]]:
    """Relay SIGKILLed 3x, each consumer once, one writer process; broker and PostgreSQL
    restarted; spread so that each consumer is killed while it has work in hand."""

    def kill(role: str) -> Inject:
        def inject() -> None:
            fleet.kill(role)

        return inject

    def kill_writer() -> None:
        fleet.kill_writer("consume shared")

    def restart_broker() -> float:
        return _outage(scripts.stop_broker, scripts.start_broker, pace.broker_down_s)

    def restart_postgres() -> float:
        return _outage(scripts.stop_postgres, scripts.start_postgres, pace.postgres_down_s)

    return [
        ("SIGKILL relay (1 of 3)", kill("relay")),
        ("SIGKILL consume sales", kill("consume sales")),
        ("SIGKILL consume support", kill("consume support")),
        ("SIGKILL the writer process of consume shared", kill_writer),
        ("restart the Kafka broker", restart_broker),
        ("SIGKILL relay (2 of 3)", kill("relay")),
        ("SIGKILL consume marketing", kill("consume marketing")),
        ("SIGKILL consume shared", kill("consume shared")),
        ("restart PostgreSQL", restart_postgres),
        ("SIGKILL consume stats", kill("consume stats")),
        ("SIGKILL relay (3 of 3)", kill("relay")),
    ]


def _outage(stop: Callable[[], None], start: Callable[[], None], hold_s: float) -> float:
    began = time.monotonic()
    stop()
    time.sleep(hold_s)
    start()
    return time.monotonic() - began


def run_all(
    faults: list[tuple[str, Inject]], url: str, load: CommandLoad, pace: Pace
) -> list[Recovery]:
    """Inject each fault, wait for recovery, let the load run `pace.between_s`, go on."""
    results = []
    for name, inject in faults:
        result = _measure(name, inject, url, load)
        print(f"  {name}: {_seconds(result.recovered_s)}", flush=True)
        results.append(result)
        time.sleep(pace.between_s)
    return results


def _measure(name: str, inject: Inject, url: str, load: CommandLoad) -> Recovery:
    position, acked = checks.head(url), load.acked
    began = time.monotonic()
    down = inject()
    deadline = began + RECOVERY_LIMIT_S
    while time.monotonic() < deadline:
        if load.acked > acked and _reached(url, position):
            return Recovery(name, down, time.monotonic() - began)
        time.sleep(0.25)
    return Recovery(name, down, None)


def _reached(url: str, position: int) -> bool:
    from projections import PROJECTIONS

    try:
        return checks.relay_reached(url, position) and all(
            checks.projection_reached(url, name, position) for name in PROJECTIONS
        )
    except psycopg.OperationalError:
        return False  # the database is still away


def _seconds(value: float | None) -> str:
    return "not recovered" if value is None else f"recovered in {value:.1f} s"
