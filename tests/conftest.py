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

import pytest
from hypothesis import core as hypothesis_core
from hypothesis.vendor import pretty

from bench.databases import fresh_database

# Schemathesis' pytest plugin, loaded before this file, swaps Hypothesis' printer for one
# that prints nothing (to speed up its own runs on large schemas). Every property test's
# failure then reads `plan=,`, without the example it found. Put the real one back.
hypothesis_core.RepresentationPrinter = pretty.RepresentationPrinter  # type: ignore[attr-defined]


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
    with fresh_database(server_url, prefix="crm_test") as url:
        yield url


@pytest.fixture(scope="session")
def kafka_bootstrap() -> str:
    """host:port of the Kafka broker started for the tests."""
    return _require("CRM_KAFKA_BOOTSTRAP")


@pytest.fixture
def topic_prefix() -> str:
    """A unique prefix so this test's topics (`<prefix>crm.customer.v1`...) are its own."""
    return f"t{uuid.uuid4().hex[:10]}."
