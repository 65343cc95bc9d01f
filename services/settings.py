"""All configuration, read once from `CRM_`-prefixed environment variables.

Every setting is documented in the README's configuration table. A bad value raises
`ConfigError` naming the variable; the CLI prints it as one line, not a traceback.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import TypeVar
from urllib.parse import urlencode, urlsplit

import msgspec
import psycopg
from psycopg.conninfo import conninfo_to_dict

from domain.validation import DEPARTMENT_PATTERN

LOG_LEVELS = ("debug", "info", "warning", "error")
HTTP_SERVERS = ("uvicorn", "granian")
ACCESS_LOG_MODES = ("on", "off", "switch")
_PASSWORD = re.compile(r"(//[^/@:]*:)[^/@]*(?=@)|([?&]password=)[^&]*")
"""A URL's password, in its user part or its query: shown as `***`, the rest as given."""


DEAD_PEER_DEFAULTS = {
    "keepalives": "1",
    "keepalives_idle": "5",
    "keepalives_interval": "2",
    "keepalives_count": "3",
    "tcp_user_timeout": "10000",
}
"""libpq parameters every PostgreSQL connection gets unless CRM_DATABASE_URL sets its own:
how a connection whose server went silent (a fail-over that moved the address, a dropped
route, NAT or firewall state lost: packets vanish, no reset comes) is found dead. Without
them a statement waits for the kernel to give up on its retransmissions, ~16 minutes,
and `statement_timeout`, enforced by the unreachable server, cannot help. A connection
idle for 5 s is probed every 2 s; one whose sent data or probes go unacknowledged for
10 s (`tcp_user_timeout`, ms) is closed, and its statement fails as the connection lost
(a 503). A slow query is not cut: the server's kernel acknowledges the query and answers
the probes while it runs. Unix-socket connections ignore them."""


class ConfigError(Exception):
    """A setting is missing, malformed or points at something unusable."""

    def __init__(self, setting: str, message: str) -> None:
        super().__init__(f"{setting}: {message}")
        self.setting = setting


class Settings(msgspec.Struct, frozen=True, kw_only=True):
    database_url: str | None
    data_dir: Path
    kafka_bootstrap: str
    log_level: str
    log_format: str
    topic_prefix: str
    kafka_partitions: int
    group_commit_window_ms: float
    group_commit_max_batch: int
    read_wait_seconds: float
    audit_key_file: Path
    """CRM_AUDIT_KEY_FILE: the Ed25519 key signing audit checkpoints (default in the data dir)."""
    audit_checkpoint_events: int
    """CRM_AUDIT_CHECKPOINT_EVENTS: sign a checkpoint after this many new positions..."""
    audit_checkpoint_seconds: float
    """CRM_AUDIT_CHECKPOINT_SECONDS: ...or this many seconds after the last, if any are new."""
    departments: tuple[str, ...] = ("sales", "support", "marketing")
    idempotency_lease_seconds: float = 30.0
    idempotency_retention_seconds: float = 86_400.0
    consumer_watchdog_seconds: float = 60.0
    http_server: str = HTTP_SERVERS[0]
    http_receive_seconds: float = 30.0
    """CRM_HTTP_RECEIVE_SECONDS: how long a client may take to send a whole request."""
    http_send_seconds: float = 30.0
    """CRM_HTTP_SEND_SECONDS: how long a client may take nothing it is sent before its
    connection is aborted (uvicorn: `services.http_request_bounds`)."""
    streams_per_principal: int = 8
    """CRM_STREAMS_PER_PRINCIPAL: event streams one principal may hold open per process."""
    streams_max: int = 64
    """CRM_STREAMS_MAX: event streams all principals together may hold open per process."""
    streams_cache_mb: int = 128
    """CRM_STREAMS_CACHE_MB: the most the event streams of an API process keep together of
    the aggregates they judge events by, in MiB by the aggregates' own estimate."""
    cache_mb: int = 128
    """CRM_CACHE_MB: the most each of an API process's two keepers of aggregates (the
    commands' cache, the reads' kept aggregates) holds, in MiB by the aggregates' own
    estimate (`Aggregate.held_bytes`)."""
    read_query_seconds: float = 1.0
    """CRM_READ_QUERY_SECONDS: the longest one query of the API's reads may run (a
    department page, a search, a timeline, a statistic; on PostgreSQL the point reads of
    the same connections too); past it, it is cancelled and the request answers 503
    `query-timeout`. They answer in milliseconds at a million customers; the bound is what
    one request whose filter scans a whole department can cost."""
    access_log: str = "on"
    """CRM_ACCESS_LOG: `off` records no reads of personal data; `switch` records, and
    SIGUSR1 turns recording off and on (both only to measure its cost: `make bench`)."""

    @property
    def embedded(self) -> bool:
        """No PostgreSQL configured: SQLite files in `data_dir`, projections in process."""
        return self.database_url is None


def load_settings(environ: Mapping[str, str] | None = None) -> Settings:
    env = os.environ if environ is None else environ
    data_dir = Path(env.get("CRM_DATA_DIR") or "./var")  # empty: the default, not the cwd
    return Settings(
        database_url=_database_url(env.get("CRM_DATABASE_URL") or None),
        data_dir=data_dir,
        kafka_bootstrap=_bootstrap(env.get("CRM_KAFKA_BOOTSTRAP", "127.0.0.1:9092")),
        log_level=_choice(env, "CRM_LOG_LEVEL", "info", LOG_LEVELS),
        log_format=_choice(env, "CRM_LOG_FORMAT", "auto", ("auto", "json", "console")),
        topic_prefix=env.get("CRM_TOPIC_PREFIX", ""),
        kafka_partitions=_number(env, "CRM_KAFKA_PARTITIONS", 3, int, minimum=1),
        group_commit_window_ms=_number(env, "CRM_GROUP_COMMIT_WINDOW_MS", 2.0, float, minimum=0),
        group_commit_max_batch=_number(env, "CRM_GROUP_COMMIT_MAX_BATCH", 200, int, minimum=1),
        read_wait_seconds=_number(env, "CRM_READ_WAIT_SECONDS", 2.0, float, minimum=0),
        audit_key_file=Path(env.get("CRM_AUDIT_KEY_FILE") or data_dir / "audit-signing.key"),
        audit_checkpoint_events=_number(env, "CRM_AUDIT_CHECKPOINT_EVENTS", 10000, int, minimum=1),
        audit_checkpoint_seconds=_number(
            env, "CRM_AUDIT_CHECKPOINT_SECONDS", 60.0, float, minimum=0.1
        ),
        departments=_departments(env.get("CRM_DEPARTMENTS", "sales,support,marketing")),
        **_idempotency(env),
        consumer_watchdog_seconds=_number(
            env, "CRM_CONSUMER_WATCHDOG_SECONDS", 60.0, float, minimum=1
        ),
        http_server=_choice(env, "CRM_HTTP_SERVER", HTTP_SERVERS[0], HTTP_SERVERS),
        http_receive_seconds=_number(env, "CRM_HTTP_RECEIVE_SECONDS", 30.0, float, minimum=1),
        http_send_seconds=_number(env, "CRM_HTTP_SEND_SECONDS", 30.0, float, minimum=1),
        access_log=_choice(env, "CRM_ACCESS_LOG", "on", ACCESS_LOG_MODES),
        streams_per_principal=_number(env, "CRM_STREAMS_PER_PRINCIPAL", 8, int, minimum=1),
        streams_max=_number(env, "CRM_STREAMS_MAX", 64, int, minimum=1),
        streams_cache_mb=_number(env, "CRM_STREAMS_CACHE_MB", 128, int, minimum=0),
        cache_mb=_number(env, "CRM_CACHE_MB", 128, int, minimum=0),
        read_query_seconds=_number(env, "CRM_READ_QUERY_SECONDS", 1.0, float, minimum=0.01),
    )


def _database_url(url: str | None) -> str | None:
    """A PostgreSQL URL as libpq reads it, naming its server: `host:port`, or a socket
    directory (`postgresql://user@/db?host=/run/postgresql`). Its other parameters
    (`sslmode`...) hold for every connection, the event store's too, and so do the
    `DEAD_PEER_DEFAULTS` it does not set."""
    if url is None:
        return None
    parts = urlsplit(url)
    params, why = {}, ""
    try:
        params = conninfo_to_dict(url) if parts.scheme in ("postgresql", "postgres") else {}
    except psycopg.ProgrammingError as error:
        # Only this message is shown: others may quote a token of the password.
        if str(error).startswith("invalid URI query parameter"):
            why = f" ({str(error).strip()}: not a libpq parameter)"
    ports = str(params.get("port") or "5432").split(",")
    if not params.get("host") or not all(port.isdigit() for port in ports):
        shown = _PASSWORD.sub(lambda m: f"{m[1] or m[2]}***", url)  # out of logs, terminals
        raise ConfigError(
            "CRM_DATABASE_URL",
            "expected postgresql://user:password@host:port/db (or a socket directory:"
            f" postgresql://user@/db?host=/run/postgresql), got {shown!r}{why}",
        )
    return with_dead_peer_detection(url, params)


def with_dead_peer_detection(url: str, params: Mapping[str, object]) -> str:
    """`url` (whose libpq parameters are `params`) with the `DEAD_PEER_DEFAULTS` it lacks
    added to its query: its own values win, and `keepalives=0` keeps them all off."""
    missing = {name: value for name, value in DEAD_PEER_DEFAULTS.items() if name not in params}
    if not missing or str(params.get("keepalives")) == "0":
        return url
    joint = "?" if not _has_query(url) else "" if url.endswith(("?", "&")) else "&"
    return f"{url}{joint}{urlencode(missing)}"


def _has_query(url: str) -> bool:
    """Whether `url` has a query, found as libpq finds it: the user info runs to an `@`
    met before any `/` (a password may hold a `?`: `postgresql://u:p?x@h/db` has none),
    and the query from the first `?` after it."""
    rest = url.partition("://")[2]
    ends = [i for i in (rest.find("@"), rest.find("/")) if i >= 0]
    if ends and rest[min(ends)] == "@":
        rest = rest[min(ends) + 1 :]
    return "?" in rest


def _bootstrap(value: str) -> str:
    for server in value.split(","):
        host, sep, port = server.strip().rpartition(":")
        if not (sep and host and port.isdigit()):
            raise ConfigError(
                "CRM_KAFKA_BOOTSTRAP", f"expected host:port[,host:port], got {value!r}"
            )
    return value


def _departments(value: str) -> tuple[str, ...]:
    """The closed set of departments: lowercase codes, comma-separated, at least one."""
    names = tuple(dict.fromkeys(name.strip().lower() for name in value.split(",") if name.strip()))
    bad = [name for name in names if not DEPARTMENT_PATTERN.fullmatch(name)]
    if not names or bad:
        raise ConfigError(
            "CRM_DEPARTMENTS", f"expected lowercase codes like sales,support, got {value!r}"
        )
    return names


def _idempotency(env: Mapping[str, str]) -> dict[str, float]:
    """How long a key in flight stays its holder's without renewal (the lease), and how
    long a key is remembered (the retention: at least two leases, so that a retry never
    mistakes a forgotten use of its key for its own attempt)."""
    lease = _number(env, "CRM_IDEMPOTENCY_LEASE_SECONDS", 30.0, float, minimum=1)
    retention = _number(env, "CRM_IDEMPOTENCY_RETENTION_SECONDS", 86_400.0, float, minimum=1)
    if retention < 2 * lease:
        raise ConfigError(
            "CRM_IDEMPOTENCY_RETENTION_SECONDS",
            f"must be at least twice the lease ({2 * lease:g}), got {retention:g}",
        )
    return {"idempotency_lease_seconds": lease, "idempotency_retention_seconds": retention}


def _choice(env: Mapping[str, str], name: str, default: str, allowed: tuple[str, ...]) -> str:
    value = env.get(name, default).lower()
    if value not in allowed:
        raise ConfigError(name, f"expected one of {', '.join(allowed)}, got {value!r}")
    return value


N = TypeVar("N", int, float)
_INTEGER = re.compile(r"[0-9]+")
_DECIMAL = re.compile(r"[0-9]+(?:\.[0-9]+)?")


def _number(env: Mapping[str, str], name: str, default: N, kind: type[N], *, minimum: float) -> N:
    raw = env.get(name)
    if raw is None:
        return default
    # ASCII digits only, as the CLI reads numbers: int() and float() also took " 5",
    # "1_000", an Arabic-Indic five, and float() "nan" and "inf", which pass any
    # `value < minimum` check and switch the bound off (or break it: a lease of NaN
    # made every concurrent retry a 500)
    if not (_INTEGER if kind is int else _DECIMAL).fullmatch(raw):
        raise ConfigError(name, f"expected a {kind.__name__} in ASCII digits, got {raw!r}")
    value = kind(raw)
    if value < minimum:
        raise ConfigError(name, f"must be at least {minimum}, got {raw!r}")
    return value
