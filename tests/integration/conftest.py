"""Fixtures of the integration tests beyond the shared services (tests/conftest.py)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.conftest import _require
from tests.integration.private_services import PrivateServices


@pytest.fixture(scope="session")
def private_services(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PrivateServices]:
    """A PostgreSQL and a Kafka broker of this test session's own, for tests that stop,
    restart or kill them (never the shared ones). Started once per pytest worker (each
    on free ports), removed at the end."""
    _require("CRM_DATABASE_URL")  # where the shared services are skipped, so are these
    services = PrivateServices(tmp_path_factory.mktemp("services"))
    try:
        services.start()
        yield services
    finally:
        services.remove()
