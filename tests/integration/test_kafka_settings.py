"""A Kafka address where no broker answers is reported as a configuration error."""

from __future__ import annotations

import socket

import pytest
from structlog.testing import capture_logs

from consumers.reachability import name_not_found
from services.bootstrap import require_kafka
from services.settings import ConfigError, load_settings

UNKNOWN = "no-such-broker.invalid"  # RFC 6761: never resolves


def test_unreachable_bootstrap_names_the_setting() -> None:
    settings = load_settings({"CRM_KAFKA_BOOTSTRAP": "127.0.0.1:1"})
    with pytest.raises(ConfigError) as raised:
        require_kafka(settings, timeout=1)
    assert raised.value.setting == "CRM_KAFKA_BOOTSTRAP"
    assert "127.0.0.1:1" in str(raised.value)


def test_the_real_broker_is_accepted(kafka_bootstrap: str) -> None:
    require_kafka(load_settings({"CRM_KAFKA_BOOTSTRAP": kafka_bootstrap}), timeout=30)


def test_a_bootstrap_host_that_does_not_exist_is_reported_at_once() -> None:
    """Not waited for as an outage would be (`consumers.reachability`)."""
    try:
        socket.getaddrinfo(UNKNOWN, 9092)
    except OSError as error:
        if not name_not_found(error):
            pytest.skip(f"no DNS answer here: {error}")
    settings = load_settings({"CRM_KAFKA_BOOTSTRAP": f"{UNKNOWN}:9092"})
    with capture_logs() as logs, pytest.raises(ConfigError) as raised:
        require_kafka(settings, timeout=600)
    assert raised.value.setting == "CRM_KAFKA_BOOTSTRAP"
    assert UNKNOWN in str(raised.value)
    assert logs == []  # never waited
