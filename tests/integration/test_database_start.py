"""A process that starts while PostgreSQL is restarting waits for it instead of exiting
with a configuration error (`services.bootstrap.check_database`). Found by the soak: a
consumer it had SIGKILLed started again as PostgreSQL shut down for a restart, reported
"the database system is shutting down" as a wrong `CRM_DATABASE_URL`, and stayed down.

What no waiting fixes (a wrong password, a database that does not exist) is still one
line naming `CRM_DATABASE_URL` and exit 2, from every long-running process, at once:
it never waited (no warning, such as "dependency lost", logged). The long-running
processes' wait without end is proved in `test_start_during_outage`."""

from __future__ import annotations

import os
import subprocess
import threading
import time
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from structlog.testing import capture_logs

from services.bootstrap import check_database
from services.settings import ConfigError
from tests.e2e.processes import CRM
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
        assert [e["event"] for e in logs] == ["dependency lost", "dependency back"]
    finally:
        restart.join()


def test_a_database_that_never_answers_is_a_configuration_error() -> None:
    began = time.monotonic()
    with pytest.raises(ConfigError) as raised:
        check_database("postgresql://crm:crm@127.0.0.1:1/crm", timeout=1.0)
    assert raised.value.setting == "CRM_DATABASE_URL"
    assert "refused" in str(raised.value)
    assert time.monotonic() - began >= 0.5  # tried again within the wait


def _wrong(url: str, what: str) -> str:
    """`url` with a wrong password, or naming a database that does not exist."""
    parts = urlsplit(url)
    if what == "password":
        server = parts.netloc.rpartition("@")[2]
        return parts._replace(netloc=f"{parts.username}:not-the-password@{server}").geturl()
    return parts._replace(path="/crm_no_such_database").geturl()


SAID = {"password": "password authentication failed", "database": "does not exist"}


@pytest.mark.parametrize("command", [("api", "--port", "1"), ("relay",), ("consume", "sales")])
@pytest.mark.parametrize("what", sorted(SAID))
def test_what_no_waiting_fixes_exits_2_at_once_naming_the_setting(
    pg_url: str, kafka_bootstrap: str, tmp_path: Path, command: tuple[str, ...], what: str
) -> None:
    env = {
        **os.environ, "CRM_DATABASE_URL": _wrong(pg_url, what),
        "CRM_KAFKA_BOOTSTRAP": kafka_bootstrap, "CRM_DATA_DIR": str(tmp_path),
        "CRM_LOG_FORMAT": "json",
    }  # fmt: skip
    done = subprocess.run(
        [CRM, *command], env=env, capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 2, done.stdout + done.stderr
    assert done.stderr.startswith("crm: configuration error: CRM_DATABASE_URL: "), done.stderr
    assert len(done.stderr.strip().splitlines()) == 1, done.stderr
    assert SAID[what] in done.stderr
    assert '"level": "warning"' not in done.stdout  # it never waited for the database
