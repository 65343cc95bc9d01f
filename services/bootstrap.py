"""The composition root: builds the event store, keyring and database pool from settings.

Entry points (CLI, HTTP) call `bootstrap()` once and hand the pieces to the
consumers and services that need them; nothing below `services/` reads settings.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import psycopg
import structlog
from psycopg_pool import ConnectionPool

from consumers.key_stores import PostgresKeyStore, SqliteKeyStore
from consumers.keyring import Keyring
from consumers.pg_pool import open_pool
from services.access import AccessModel
from services.event_store import CrmApplication, open_event_store
from services.settings import ConfigError, Settings

log = structlog.get_logger("crm.bootstrap")


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


def connect_pool(database_url: str, max_size: int = 8) -> ConnectionPool:
    """A psycopg pool (surviving server restarts), after checking the server answers
    (one clear error if not)."""
    check_database(database_url)
    return open_pool(database_url, max_size=max_size)


DATABASE_START_WAIT_S = 30.0
"""How long a process that starts while PostgreSQL does not answer (a restart under way,
a server still starting) waits for it before reporting `CRM_DATABASE_URL`: the grace
`require_kafka` gives the broker."""


def check_database(database_url: str, timeout: float = DATABASE_START_WAIT_S) -> None:
    """Return once the server answers; after `timeout`, one clear error naming the setting.

    Every failure is tried again until then, wrong credentials too: libpq reports a
    refused login with no error code that tells it from a server shutting down. The
    first failure is logged with its reason, so a wrong URL shows at once."""
    deadline, delay, logged = time.monotonic() + timeout, 0.2, False
    while True:
        try:
            with psycopg.connect(database_url, connect_timeout=5) as conn:
                conn.execute("SELECT 1")
            return
        except psycopg.Error as error:
            text = str(error).strip()
            reason = text.splitlines()[0] if text else type(error).__name__
            if time.monotonic() + delay >= deadline:
                raise ConfigError("CRM_DATABASE_URL", f"cannot connect: {reason}") from None
            if not logged:
                log.warning("waiting for the database", reason=reason, up_to_s=timeout)
                logged = True
            time.sleep(delay)
            delay = min(delay * 2, 2.0)


def require_kafka(settings: Settings, timeout: float = 30.0) -> None:
    """Fail with one line naming CRM_KAFKA_BOOTSTRAP when no broker answers at start.

    Outages *after* a process has started are retried by the relay and the runner;
    a broker that never answered is far more likely a wrong address.
    """
    from consumers.kafka_io import BrokerUnavailable, wait_until_ready

    try:
        wait_until_ready(settings.kafka_bootstrap, timeout=timeout)
    except BrokerUnavailable:
        raise ConfigError(
            "CRM_KAFKA_BOOTSTRAP",
            f"no Kafka broker answered at {settings.kafka_bootstrap} within {timeout:.0f} s",
        ) from None


def ensure_data_dir(path: Path) -> Path:
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise ConfigError("CRM_DATA_DIR", f"cannot create {path}: {error.strerror}") from None
    if not os.access(path, os.W_OK):
        raise ConfigError("CRM_DATA_DIR", f"{path} is not writable")
    return path.resolve()
