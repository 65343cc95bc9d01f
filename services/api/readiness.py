"""What `/readyz` checks: the event store, Kafka (PostgreSQL mode), read-model lag and
dead letters, and (embedded) whether the in-process follower is stalled.

Each check returns None when fine, else one line saying what is wrong. They are cheap
(a few indexed reads or one TCP connect), since orchestrators poll `/readyz` often.

The dead-letter rule: not ready while any projection's live version holds a dead
letter. Such a read model lacks an event's effect, so its answers about that event's
customer are wrong, and nothing heals by itself: an operator fixes the cause, runs
`crm projections retry NAME`, and readiness returns. Lag, by contrast, heals alone,
so it only counts beyond `LAG_LIMIT`.
I/O: the event store, the read-model store, one TCP connect to the broker.
"""

from __future__ import annotations

import socket
from collections.abc import Callable

from eventsourcing.persistence import PersistenceError

from consumers.readmodel_store import ReadModelStore
from projections import PROJECTIONS
from services.api.read_positions import AppliedPosition
from services.bootstrap import Runtime

ReadinessCheck = Callable[[], str | None]
"""Returns None when ready, else the reason it is not (shown in /readyz)."""

LAG_LIMIT = 10_000
"""Events (embedded) or Kafka records (per projection) behind before we stop being ready."""


def default_checks(
    runtime: Runtime, store: ReadModelStore | None, applied: AppliedPosition | None
) -> dict[str, ReadinessCheck]:
    checks: dict[str, ReadinessCheck] = {"event_store": lambda: store_check(runtime)}
    if not runtime.settings.embedded:
        checks["kafka"] = lambda: kafka_check(runtime.settings.kafka_bootstrap)
        if store is not None:
            checks["projections"] = lambda: consumers_check(store)
    elif applied is not None:
        checks["projections"] = lambda: follower_check(runtime, applied)
    if store is not None:
        checks["dead_letters"] = lambda: dead_letters_check(store)
    return checks


def store_check(runtime: Runtime) -> str | None:
    try:
        runtime.app.head_position()
    except (PersistenceError, OSError) as error:
        return f"event store unavailable: {type(error).__name__}"
    return None


def kafka_check(bootstrap: str) -> str | None:
    """A TCP connect to any bootstrap server (a listening broker, not a full round trip:
    the Kafka client lives in `consumers/`, and the relay reports publishing problems)."""
    for server in bootstrap.split(","):
        host, _, port = server.strip().rpartition(":")
        try:
            socket.create_connection((host, int(port)), timeout=0.5).close()
        except OSError:
            continue
        return None
    return f"no Kafka broker accepts TCP connections at {bootstrap}"


def follower_check(runtime: Runtime, applied: AppliedPosition) -> str | None:
    """Embedded: the in-process follower is within LAG_LIMIT events of the store's head."""
    lag = runtime.app.head_position() - applied(list(PROJECTIONS))
    return None if lag <= LAG_LIMIT else f"projections {lag} events behind"


def consumers_check(store: ReadModelStore) -> str | None:
    """PostgreSQL: every projection has a live version and its consumer's last batch was
    within LAG_LIMIT Kafka records of the end of the topics."""
    problems = []
    for name in PROJECTIONS:
        status = store.status(name)
        if status.generation is None:
            problems.append(f"{name} has never run (start `crm consume {name}`)")
        elif status.lag is not None and status.lag > LAG_LIMIT:
            problems.append(f"{name} {status.lag} records behind")
    return "; ".join(problems) or None


def dead_letters_check(store: ReadModelStore) -> str | None:
    """Not ready while a projection holds dead letters (the rule: see the module doc)."""
    counts = {name: store.status(name).dead_letters for name in PROJECTIONS}
    found = [f"{name} {count}" for name, count in counts.items() if count]
    if not found:
        return None
    return f"dead letters: {', '.join(found)} (fix the cause, then `crm projections retry NAME`)"


def stalled_check(trouble: Callable[[], str | None]) -> ReadinessCheck:
    """Embedded: not ready while the follower's steps keep failing (it retries them)."""
    return lambda: None if (reason := trouble()) is None else f"projections stalled: {reason}"
