"""CRM_ACCESS_LOG=off (for measuring the access log's cost) records no reveal; on, the
default, records each one."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest

from services.access import Principal, Role
from services.access_log import AccessLog
from services.access_log_store import SqliteAccessStore
from services.settings import load_settings


def test_the_access_log_records_unless_switched_off() -> None:
    assert load_settings({}).access_log
    assert not load_settings({"CRM_ACCESS_LOG": "off"}).access_log


@pytest.mark.parametrize(("recording", "stored"), [(True, 1), (False, 0)])
def test_reveals_are_stored_only_while_recording(
    tmp_path: Path, recording: bool, stored: int
) -> None:
    store = SqliteAccessStore(tmp_path / "access.db")
    log = AccessLog(store, recording=recording)
    who = Principal(name="max", department="sales", role=Role.MANAGER)
    log.reveal(who, "GET /v1/customers/{customer_id}", {uuid.uuid4(): ["email"]})
    log.flush()
    assert len(store.records(0, 10)) == stored
    store.close()
