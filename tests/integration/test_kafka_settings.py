"""A Kafka address where no broker answers is reported as a configuration error."""

from __future__ import annotations

import pytest

from services.bootstrap import require_kafka
from services.settings import ConfigError, load_settings


def test_unreachable_bootstrap_names_the_setting() -> None:
    settings = load_settings({"CRM_KAFKA_BOOTSTRAP": "127.0.0.1:1"})
    with pytest.raises(ConfigError) as raised:
        require_kafka(settings, timeout=1)
    assert raised.value.setting == "CRM_KAFKA_BOOTSTRAP"
    assert "127.0.0.1:1" in str(raised.value)


def test_the_real_broker_is_accepted(kafka_bootstrap: str) -> None:
    require_kafka(load_settings({"CRM_KAFKA_BOOTSTRAP": kafka_bootstrap}), timeout=30)
