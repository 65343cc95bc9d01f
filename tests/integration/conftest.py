"""Fixtures of the integration tests beyond the shared services (tests/conftest.py)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from litestar.testing import TestClient

from tests.conftest import _require
from tests.integration.api_support import Client, EmbeddedApi, embedded_api
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


@pytest.fixture(params=["sqlite", "postgres"])
def api_on_each_store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[EmbeddedApi]:
    """The embedded API with its event store and read models on SQLite, then on
    PostgreSQL (a fresh database)."""
    url = request.getfixturevalue("pg_url") if request.param == "postgres" else None
    with embedded_api(tmp_path, database_url=url) as embedded:
        yield embedded


@pytest.fixture
def api(tmp_path: Path) -> Iterator[EmbeddedApi]:
    """The embedded API on SQLite files in `tmp_path` (a module may define its own)."""
    with embedded_api(tmp_path) as embedded:
        yield embedded


@pytest.fixture
def client(api: EmbeddedApi) -> Iterator[Client]:
    """A test client of `api` (in process, no server)."""
    with TestClient(app=api.app) as test_client:
        yield test_client
