"""A process that starts while PostgreSQL is restarting waits for it instead of exiting
with a configuration error (`services.bootstrap.check_database`). Found by the soak: a
consumer it had SIGKILLed started again as PostgreSQL shut down for a restart, reported
"the database system is shutting down" as a wrong `CRM_DATABASE_URL`, and stayed down."""

from __future__ import annotations

import threading
import time

import pytest
from structlog.testing import capture_logs

from services.bootstrap import check_database
from services.settings import ConfigError
from tests.integration.private_services import PrivateServices

pytestmark = pytest.mark.integration


def test_a_database_back_within_the_wait_is_accepted(private_services: PrivateServices) -> None:
    private_services.stop_postgres()
    restart = threading.Timer(3.0, private_services.start_postgres)
    restart.start()
    try:
        began = time.monotonic()
        with capture_logs() as logs:
            check_database(private_services.database_url, timeout=120)
        assert time.monotonic() - began >= 3.0  # it waited: the server was down at first
        assert [e["event"] for e in logs] == ["waiting for the database"]
    finally:
        restart.join()


def test_a_database_that_never_answers_is_a_configuration_error() -> None:
    began = time.monotonic()
    with pytest.raises(ConfigError) as raised:
        check_database("postgresql://crm:crm@127.0.0.1:1/crm", timeout=1.0)
    assert raised.value.setting == "CRM_DATABASE_URL"
    assert "refused" in str(raised.value)
    assert time.monotonic() - began >= 0.5  # tried again within the wait
