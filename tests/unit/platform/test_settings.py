from __future__ import annotations

from pathlib import Path

import pytest

from services.settings import ConfigError, load_settings


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
    ],
)
def test_a_bad_value_names_its_setting(variable: str, value: str) -> None:
    with pytest.raises(ConfigError) as raised:
        load_settings({variable: value})
    assert raised.value.setting == variable
    assert str(raised.value).startswith(f"{variable}: ")
