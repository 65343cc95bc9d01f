from __future__ import annotations

from pathlib import Path

import pytest
from psycopg.conninfo import conninfo_to_dict

from services.cli_analysts import analyst_url
from services.event_store import UrlPostgresFactory, store_env
from services.settings import DEAD_PEER_DEFAULTS, ConfigError, load_settings


def test_defaults_are_the_embedded_mode() -> None:
    settings = load_settings({})
    assert settings.embedded
    assert settings.data_dir == Path("var")
    assert settings.kafka_bootstrap == "127.0.0.1:9092"


def test_the_signing_key_lives_in_the_data_dir_unless_placed_elsewhere() -> None:
    assert load_settings({"CRM_DATA_DIR": "/srv/crm"}).audit_key_file == Path(
        "/srv/crm/audit-signing.key"
    )
    placed = load_settings({"CRM_AUDIT_KEY_FILE": "/etc/crm/signing.key"})
    assert placed.audit_key_file == Path("/etc/crm/signing.key")
    assert (placed.audit_checkpoint_events, placed.audit_checkpoint_seconds) == (10000, 60.0)


def test_database_url_selects_postgres() -> None:
    settings = load_settings({"CRM_DATABASE_URL": "postgresql://crm:crm@127.0.0.1:5432/crm"})
    assert not settings.embedded


def test_a_bad_database_url_is_shown_without_its_password() -> None:
    with pytest.raises(ConfigError) as raised:
        load_settings({"CRM_DATABASE_URL": "mysql://crm:s3cret@db:3306/crm"})
    assert "s3cret" not in str(raised.value)
    assert "mysql://crm:***@db:3306/crm" in str(raised.value)


@pytest.mark.parametrize(
    "url",
    [
        "postgres://db.internal/crm",
        "postgresql://crm@/crm?host=/run/postgresql",  # a socket directory
        "postgresql://crm@%2Frun%2Fpostgresql/crm",  # the same, percent-encoded
        "postgresql://crm:pw@db1:5432,db2:5433/crm?sslmode=verify-full&target_session_attrs=read-write",
        "postgresql://crm:p?w@db:5432/crm",  # a `?` in the password: no query (review)
        "postgresql://crm:p?w@db:5432/crm?sslmode=require",
    ],
)
def test_a_database_url_libpq_reads_is_taken_as_written(url: str) -> None:
    """As written, with only the dead-peer defaults it lacks added to its query."""
    taken = load_settings({"CRM_DATABASE_URL": url}).database_url
    assert taken is not None
    assert taken.startswith(url)
    assert conninfo_to_dict(taken) == conninfo_to_dict(url) | DEAD_PEER_DEFAULTS


@pytest.mark.parametrize(
    "url",
    [
        "postgresql://crm@db/crm",
        "postgresql://crm@db/crm?",
        "postgresql://crm@db/crm?sslmode=require&",
        "postgresql://crm@db1:5432,db2:5433/crm?target_session_attrs=read-write",
    ],
)
def test_every_connection_finds_a_silent_server_dead_by_default(url: str) -> None:
    taken = load_settings({"CRM_DATABASE_URL": url}).database_url
    assert taken is not None
    params = conninfo_to_dict(taken)
    assert {name: params[name] for name in DEAD_PEER_DEFAULTS} == DEAD_PEER_DEFAULTS


def test_the_operators_dead_peer_settings_win() -> None:
    url = "postgresql://crm@db/crm?keepalives_idle=60&tcp_user_timeout=0&sslmode=require"
    params = conninfo_to_dict(load_settings({"CRM_DATABASE_URL": url}).database_url or "")
    assert (params["keepalives_idle"], params["tcp_user_timeout"]) == ("60", "0")
    assert (params["keepalives_interval"], params["sslmode"]) == ("2", "require")
    every = "".join(f"&{name}=7" for name in DEAD_PEER_DEFAULTS)
    assert load_settings({"CRM_DATABASE_URL": url + every}).database_url == url + every
    off = "postgresql://crm@db/crm?keepalives=0"  # off: nothing added, tcp_user_timeout too
    assert load_settings({"CRM_DATABASE_URL": off}).database_url == off


@pytest.mark.parametrize(
    "url",
    [
        "postgresql:///crm",  # no server named
        "postgresql://crm:pw@db:port/crm",
        "postgresql://crm@db/crm?sslmod=require",  # a parameter libpq does not know
        "postgresql://crm@db/crm?password=s3cret&sslmod=require",
    ],
)
def test_a_database_url_libpq_cannot_use_is_refused_without_its_password(url: str) -> None:
    with pytest.raises(ConfigError) as raised:
        load_settings({"CRM_DATABASE_URL": url})
    assert "socket directory" in str(raised.value)
    assert "s3cret" not in str(raised.value)


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("postgresql://crm@db:port/crm", "postgresql://crm@db:port/crm"),
        ("postgresql://db:port/crm", "postgresql://db:port/crm"),
        ("postgresql://crm:s3cret@db:port/crm", "postgresql://crm:***@db:port/crm"),
        ("postgresql://db:x/crm?password=s3cret&sslmode=require",
         "postgresql://db:x/crm?password=***&sslmode=require"),
    ],
)  # fmt: skip
def test_a_refused_url_is_shown_as_given_but_its_password(url: str, shown: str) -> None:
    with pytest.raises(ConfigError) as refused:
        load_settings({"CRM_DATABASE_URL": url})
    assert f"got {shown!r}" in str(refused.value)


def test_an_unknown_parameter_is_named_and_a_bad_password_is_not_shown() -> None:
    with pytest.raises(ConfigError) as unknown:
        load_settings({"CRM_DATABASE_URL": "postgresql://u:pw@db/crm?schema=public"})
    assert 'invalid URI query parameter: "schema"' in str(unknown.value)
    with pytest.raises(ConfigError) as garbled:  # libpq's own message quotes the token
        load_settings({"CRM_DATABASE_URL": "postgresql://u:s3%zzcret@db/crm"})
    assert "zz" not in str(garbled.value).replace("***", "")


def test_the_event_store_connects_with_every_parameter_of_the_url() -> None:
    url = "postgresql://crm:pw@/crm?host=/run/postgresql&sslmode=require"
    env = store_env(url, None)
    assert (env["POSTGRES_HOST"], env["POSTGRES_PORT"], env["POSTGRES_DBNAME"]) == (
        "/run/postgresql",
        "",  # libpq's default
        "crm",
    )
    pool = UrlPostgresFactory(env).datastore.pool  # not opened: connects to nothing
    assert isinstance(pool.kwargs, dict)
    assert pool.kwargs["host"] == "/run/postgresql"
    assert pool.kwargs["sslmode"] == "require"
    pool.close()


def test_an_analysts_url_keeps_the_server_and_drops_the_services_credentials() -> None:
    url = (
        "postgresql://svc:svcpw@/crm?host=/run/postgresql&password=svcpw&sslmode=verify-full"
        "&sslcert=/etc/crm/client.crt&sslkey=/etc/crm/client.key&passfile=/etc/crm/pgpass"
    )
    shown = analyst_url(load_settings({"CRM_DATABASE_URL": url}), "ana", "p@ss")
    assert shown == "postgresql://ana:p%40ss@/crm?host=%2Frun%2Fpostgresql&sslmode=verify-full"


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("CRM_DATABASE_URL", "mysql://somewhere/db"),
        ("CRM_KAFKA_BOOTSTRAP", "no-port-here"),
        ("CRM_LOG_LEVEL", "chatty"),
        ("CRM_KAFKA_PARTITIONS", "0"),
        ("CRM_GROUP_COMMIT_WINDOW_MS", "soon"),
        ("CRM_AUDIT_CHECKPOINT_EVENTS", "0"),
        ("CRM_AUDIT_CHECKPOINT_SECONDS", "often"),
        ("CRM_ACCESS_LOG", "sometimes"),
        # numbers in ASCII digits only: NaN passed every minimum, and a lease of NaN made
        # concurrent retries 500s; int() read " 5", "1_0" and an Arabic-Indic five
        ("CRM_IDEMPOTENCY_LEASE_SECONDS", "nan"),
        ("CRM_READ_QUERY_SECONDS", "nan"),
        ("CRM_READ_QUERY_SECONDS", "inf"),
        ("CRM_HTTP_RECEIVE_SECONDS", "1e3"),
        ("CRM_GROUP_COMMIT_WINDOW_MS", "inf"),
        ("CRM_CACHE_MB", "\u0665"),
        ("CRM_STREAMS_MAX", " 5"),
        ("CRM_STREAMS_PER_PRINCIPAL", "1_0"),
    ],
)
def test_a_bad_value_names_its_setting(variable: str, value: str) -> None:
    with pytest.raises(ConfigError) as raised:
        load_settings({variable: value})
    assert raised.value.setting == variable
    assert str(raised.value).startswith(f"{variable}: ")


@pytest.mark.parametrize("variable", ["CRM_CACHE_MB", "CRM_STREAMS_CACHE_MB"])
def test_a_cache_is_a_whole_number_of_mib_not_below_zero(variable: str) -> None:
    field = variable.removeprefix("CRM_").lower()
    assert getattr(load_settings({}), field) == 128
    assert getattr(load_settings({variable: "512"}), field) == 512
    for bad in ("-1", "1.5", "lots"):
        with pytest.raises(ConfigError) as raised:
            load_settings({variable: bad})
        assert variable in str(raised.value)


def test_an_empty_data_dir_is_the_default_not_the_working_directory() -> None:
    """`CRM_DATA_DIR=` put events.db and keys.db in the current directory (red team s33),
    where an empty CRM_DATABASE_URL or CRM_AUDIT_KEY_FILE already meant unset."""
    assert load_settings({"CRM_DATA_DIR": ""}).data_dir == load_settings({}).data_dir


def test_a_decimal_setting_takes_a_fraction() -> None:
    assert load_settings({"CRM_READ_QUERY_SECONDS": "2.5"}).read_query_seconds == 2.5
