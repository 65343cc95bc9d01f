"""Fixtures for the real services: PostgreSQL and Kafka on 127.0.0.1.

`make test` starts both (scripts/services.sh) and exports CRM_DATABASE_URL and
CRM_KAFKA_BOOTSTRAP. Without them, integration tests skip locally but FAIL under
CI=true: a run that silently skipped the real services would prove nothing.

Each test gets its own database (created from the server's URL) and its own topic
prefix, so tests never see each other's events.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from urllib.parse import urlsplit, urlunsplit

import psycopg
import pytest
from psycopg import sql


def _require(variable: str) -> str:
    value = os.environ.get(variable)
    if value:
        return value
    message = f"{variable} is not set: start the services with `make services-up`"
    if os.environ.get("CI"):
        pytest.fail(message)
    pytest.skip(message)


@pytest.fixture(scope="session")
def server_url() -> str:
    """URL of the PostgreSQL server started for the tests."""
    return _require("CRM_DATABASE_URL")


@pytest.fixture
def pg_url(server_url: str) -> Iterator[str]:
    """A fresh, empty database for one test; dropped afterwards."""
    name = f"crm_test_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(server_url, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    parts = urlsplit(server_url)
    yield urlunsplit(parts._replace(path=f"/{name}"))
    with psycopg.connect(server_url, autocommit=True) as conn:
        conn.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
        )


@pytest.fixture(scope="session")
def kafka_bootstrap() -> str:
    """host:port of the Kafka broker started for the tests."""
    return _require("CRM_KAFKA_BOOTSTRAP")


@pytest.fixture
def topic_prefix() -> str:
    """A unique prefix so this test's topics (`<prefix>crm.customer.v1`...) are its own."""
    return f"t{uuid.uuid4().hex[:10]}."
