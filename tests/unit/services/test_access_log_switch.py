"""CRM_ACCESS_LOG: `on` (the default) records every reveal; `off` records none; `switch`
records until SIGUSR1 turns recording off, and on again at the next one. Both exist
only so the HTTP benchmark can measure what recording costs."""

from __future__ import annotations

import os
import signal
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from services.access.rules import Principal, Role
from services.access_log import AccessLog
from services.access_log_store import SqliteAccessStore
from services.settings import ConfigError, load_settings

WHO = Principal(name="max", department="sales", role=Role.MANAGER)


@pytest.fixture
def store(tmp_path: Path) -> Iterator[SqliteAccessStore]:
    store = SqliteAccessStore(tmp_path / "access.db")
    yield store
    store.close()


@pytest.fixture
def restored_sigusr1() -> Iterator[None]:
    before = signal.getsignal(signal.SIGUSR1)
    yield
    signal.signal(signal.SIGUSR1, before)


def test_the_access_log_is_on_unless_configured_otherwise() -> None:
    assert load_settings({}).access_log == "on"
    assert load_settings({"CRM_ACCESS_LOG": "off"}).access_log == "off"
    assert load_settings({"CRM_ACCESS_LOG": "switch"}).access_log == "switch"
    with pytest.raises(ConfigError, match="CRM_ACCESS_LOG"):
        load_settings({"CRM_ACCESS_LOG": "sometimes"})


def _reveal_one(log: AccessLog) -> None:
    log.reveal(WHO, "GET /v1/customers/{customer_id}", {uuid.uuid4(): ["email"]})
    log.flush()


@pytest.mark.parametrize(("mode", "stored"), [("on", 1), ("off", 0)])
def test_reveals_are_stored_only_while_recording(
    store: SqliteAccessStore, mode: str, stored: int
) -> None:
    log = AccessLog(store, mode=mode)
    _reveal_one(log)
    assert len(store.records(0, 10)) == stored


@pytest.mark.usefixtures("restored_sigusr1")
def test_sigusr1_switches_recording_only_in_switch_mode(store: SqliteAccessStore) -> None:
    log = AccessLog(store, mode="switch")
    with capture_logs() as logged:
        log.start()
        try:
            _reveal_one(log)
            os.kill(os.getpid(), signal.SIGUSR1)  # handled before os.kill returns (main thread)
            _reveal_one(log)
            os.kill(os.getpid(), signal.SIGUSR1)
            _reveal_one(log)
        finally:
            log.stop()
    assert len(store.records(0, 10)) == 2
    switched = [e["recording"] for e in logged if e["event"] == "access log recording switched"]
    assert switched == [False, True]  # said by the writer, not in the signal handler


@pytest.mark.usefixtures("restored_sigusr1")
def test_an_always_on_log_leaves_sigusr1_alone(store: SqliteAccessStore) -> None:
    before = signal.getsignal(signal.SIGUSR1)
    log = AccessLog(store, mode="on")
    log.start()
    log.stop()
    assert signal.getsignal(signal.SIGUSR1) is before
