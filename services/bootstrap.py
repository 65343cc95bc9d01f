"""The composition root: builds the event store, keyring and database pool from settings.

Entry points (CLI, HTTP) call `bootstrap()` once and hand the pieces to the
consumers and services that need them; nothing below `services/` reads settings.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

from psycopg_pool import ConnectionPool

from consumers.as_stored import PostgresStoredEvents
from consumers.key_stores import PostgresKeyStore, SqliteKeyStore
from consumers.keyring import Keyring
from consumers.outage import KAFKA, POSTGRES, Dependencies
from consumers.pg_pool import open_pool
from consumers.reachability import (
    Misconfigured,
    Unavailable,
    reach_kafka,
    reach_postgres,
    wait_until_reachable,
)
from services.access.model import AccessModel
from services.event_store import CrmApplication, open_event_store
from services.pg_batch_recorder import BatchInsertRecorder
from services.settings import ConfigError, Settings

_POSTGRES_ONLY = "Kafka records are checked against the PostgreSQL event store only"


@dataclass
class Runtime:
    settings: Settings
    app: CrmApplication
    keyring: Keyring
    pool: ConnectionPool | None = None
    closers: list[Callable[[], object]] = field(default_factory=list)
    """What the services built on this runtime opened of their own (the embedded access
    log's SQLite file), closed before the event store: explicitly, not by the finalizers
    of the process's exit."""

    @property
    def access(self) -> AccessModel:
        """The one access model, over the configured departments (`CRM_DEPARTMENTS`)."""
        return AccessModel(self.settings.departments)

    def as_stored(self) -> PostgresStoredEvents:
        """The event store as Kafka consumers check their records against it
        (`consumers.as_stored`): PostgreSQL only (the embedded default has no consumers
        of Kafka; its follower reads the store itself)."""
        if self.pool is None:
            raise TypeError(_POSTGRES_ONLY)
        return as_stored(self.app, self.pool)

    def close(self) -> None:
        while self.closers:
            self.closers.pop()()
        self.app.close()
        if self.pool is not None:
            self.pool.close()


def bootstrap(settings: Settings) -> Runtime:
    """Open the event store (PostgreSQL when configured, else SQLite in the data dir)."""
    if settings.database_url is None:
        data_dir = ensure_data_dir(settings.data_dir)
        keyring = Keyring(SqliteKeyStore(data_dir / "keys.db"))
        return Runtime(settings, open_event_store(None, data_dir, keyring), keyring)
    pool = connect_pool(settings.database_url)
    keyring = Keyring(PostgresKeyStore(pool))
    return Runtime(settings, open_event_store(settings.database_url, None, keyring), keyring, pool)


def as_stored(app: CrmApplication, pool: ConnectionPool) -> PostgresStoredEvents:
    """`Runtime.as_stored` of the PostgreSQL event store `app`, queried on `pool`: the
    process's own (`consumers.pg_pool`), which reconnects as soon as it is asked after
    an outage. Not the event store's pool: psycopg_pool's own reconnect backoff left it
    without a connection for seconds after PostgreSQL was back, and the recorder rides
    that out by retrying each call for ~12 s, where a consumer would report the outage
    anew."""
    recorder = app.recorder
    if not isinstance(recorder, BatchInsertRecorder):
        raise TypeError(_POSTGRES_ONLY)
    return PostgresStoredEvents(pool.connection, recorder.events_table)


def connect_pool(database_url: str, max_size: int = 8) -> ConnectionPool:
    """A psycopg pool (surviving server restarts), after checking the server answers
    (one clear error if not)."""
    check_database(database_url)
    return open_pool(database_url, max_size=max_size)


START_WAIT_S = 30.0
"""How long a short command (`crm principals add`, `crm topics ensure`...) waits for
PostgreSQL or Kafka that does not answer before reporting the setting; the processes
that run until stopped (`wait_for_database`, `wait_for_kafka`) wait as long as it takes."""


def wait_for_database(
    settings: Settings,
    process: str,
    stop: threading.Event,
    on_change: Callable[[frozenset[str]], None] | None = None,
) -> bool:
    """For `crm api`, `crm relay` and `crm consume` as they start: wait as long as it
    takes for PostgreSQL (when configured), as a running process rides out an outage,
    with its one line when lost and one when back (and `on_change`: the API answers
    meanwhile, `services.api_waiting`). False if `stop` was set meanwhile (a signal:
    exit 0). A reason no waiting fixes (`consumers.reachability`) is a `ConfigError`
    naming the setting. The relay and consumers then open their health row, and wait
    for Kafka (`wait_for_kafka`) with it saying so."""
    url = settings.database_url
    deps = Dependencies(process, on_change=on_change)
    return url is None or _wait(POSTGRES, url, deps, stop)


def wait_for_kafka(settings: Settings, deps: Dependencies, stop: threading.Event) -> bool:
    """`wait_for_database` for the broker, with the process's own `deps`: while no
    broker answers, its `on_change` (`HealthReport.down`) has its row in
    `crm_process_health` say `kafka` is down, which `/readyz` and `/metrics` show."""
    return _wait(KAFKA, settings.kafka_bootstrap, deps, stop)


def check_database(database_url: str, timeout: float = START_WAIT_S) -> None:
    """Return once the server answers; a `ConfigError` naming the setting at once for a
    reason no waiting fixes, else after `timeout`."""
    _wait(POSTGRES, database_url, Dependencies("crm"), threading.Event(), within=timeout)


def require_kafka(settings: Settings, timeout: float = START_WAIT_S) -> None:
    """Fail with one line naming CRM_KAFKA_BOOTSTRAP when no broker answers at start
    within `timeout` (at once when no bootstrap host name exists)."""
    _wait(KAFKA, settings.kafka_bootstrap, Dependencies("crm"), threading.Event(), within=timeout)


_SETTINGS = {POSTGRES: "CRM_DATABASE_URL", KAFKA: "CRM_KAFKA_BOOTSTRAP"}


def _wait(
    dependency: str,
    address: str,
    deps: Dependencies,
    stop: threading.Event,
    *,
    within: float | None = None,
) -> bool:
    """`wait_until_reachable` for `dependency` at `address` (URL or bootstrap servers),
    its failures told as the `ConfigError` of its setting."""
    reach = reach_postgres if dependency == POSTGRES else reach_kafka
    try:
        return wait_until_reachable(partial(reach, address), dependency, deps, stop, within=within)
    except Misconfigured as error:
        raise ConfigError(_SETTINGS[dependency], f"cannot connect: {error}") from None
    except Unavailable as error:
        if dependency == KAFKA:
            message = f"no Kafka broker answered at {address} within {within:.0f} s"
        else:
            message = f"cannot connect: {error}"
        raise ConfigError(_SETTINGS[dependency], message) from None


def ensure_data_dir(path: Path) -> Path:
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise ConfigError("CRM_DATA_DIR", f"cannot create {path}: {error.strerror}") from None
    if not os.access(path, os.W_OK):
        raise ConfigError("CRM_DATA_DIR", f"{path} is not writable")
    return path.resolve()
