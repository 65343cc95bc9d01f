"""`crm audit verify-access` checks what queries filter on, not only the chain (F2).

The chain covers each record's bytes; an auditor's query (`crm audit access`, `GET
/v1/audit/access`) filters on columns beside them: `principal`, `at` and the customers
in `crm_access_subjects`. The red team changed or deleted those and the records
vanished from queries while verify-access said intact. Each is now an edit, on both
stores.
"""

from __future__ import annotations

import os
import sqlite3
import subprocess
import uuid
from collections.abc import Callable, Iterator
from contextlib import closing
from pathlib import Path
from typing import Any

import psycopg
import pytest

from bench.databases import fresh_database
from domain.chain_walk import BreakKind
from services.access.rules import Principal, Role
from services.access_log import AccessLog
from services.access_log_store import PostgresAccessStore, SqliteAccessStore
from services.bootstrap import connect_pool
from tests.integration.audit_support import CRM, ROOT

Sql = Callable[[str], None]
Stored = PostgresAccessStore | SqliteAccessStore


@pytest.fixture(params=["postgres", "sqlite"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[Stored, Sql]]:
    if request.param == "sqlite":
        path = tmp_path / "access.db"
        sqlite_store = SqliteAccessStore(path)

        def on_sqlite(statement: str) -> None:
            with closing(sqlite3.connect(path, isolation_level=None)) as db:
                db.execute(statement)

        yield sqlite_store, on_sqlite
        sqlite_store.close()
        return
    with fresh_database(request.getfixturevalue("server_url"), prefix="crm_access") as url:
        pool = connect_pool(url)

        def on_postgres(statement: str) -> None:
            with psycopg.connect(url, autocommit=True) as conn:
                conn.execute(statement.encode())

        try:
            yield PostgresAccessStore(pool), on_postgres
        finally:
            pool.close()


def _recorded(store: Stored) -> None:
    """Three records by three principals, each naming two customers (one shared)."""
    shared = uuid.uuid4()
    log = AccessLog(store, flush_seconds=60)
    for name in ("ann", "bob", "cy"):
        reader = Principal(name=name, department="sales", role=Role.MANAGER)
        log.reveal(
            reader, "GET /v1/customers/{customer_id}", {shared: ["email"], uuid.uuid4(): ["name"]}
        )
        log.flush()


TAMPERING = {
    "a subject row deleted": "DELETE FROM crm_access_subjects WHERE position = 2"
    " AND customer_id NOT IN (SELECT customer_id FROM crm_access_subjects WHERE position = 1)",
    "a subject row added": "INSERT INTO crm_access_subjects"
    " VALUES ('00000000-0000-0000-0000-000000000001', 2)",
    "the principal renamed": "UPDATE crm_access_log SET principal = 'x' WHERE position = 2",
    "the time moved": "UPDATE crm_access_log SET at = '1999-01-01T00:00:00+00:00'"
    " WHERE position = 2",
}


@pytest.mark.parametrize("tampering", list(TAMPERING))
def test_a_record_filed_otherwise_than_it_says_is_an_edit(
    store: tuple[Stored, Sql], tampering: str
) -> None:
    access, sql = store
    _recorded(access)
    assert verify_access(access) == (3, None)
    sql(TAMPERING[tampering])
    count, broken = verify_access(access)
    assert broken is not None, tampering
    assert (broken.kind, broken.position) == (BreakKind.EDITED, 2)
    assert "filed under" in broken.detail
    assert count == 3  # the chain itself holds


def verify_access(store: Stored) -> tuple[int, Any]:
    from services.cli_audit_access import verify_access as walk

    return walk(store)


def test_verify_access_on_the_command_line_finds_a_renamed_principal(tmp_path: Path) -> None:
    access = SqliteAccessStore(tmp_path / "access.db")
    _recorded(access)
    access.close()
    env = {**os.environ, "CRM_DATA_DIR": str(tmp_path), "CRM_DATABASE_URL": ""}

    def verify() -> subprocess.CompletedProcess[str]:
        command = [*CRM, "audit", "verify-access"]
        return subprocess.run(
            command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=120, check=False
        )

    assert verify().returncode == 0
    with closing(sqlite3.connect(tmp_path / "access.db", isolation_level=None)) as db:
        db.execute("UPDATE crm_access_log SET principal = 'x' WHERE principal = 'bob'")
    result = verify()
    assert result.returncode == 1, result.stdout + result.stderr
    assert "edited at position 2" in result.stderr


def test_a_chain_break_before_a_misfiled_record_is_named_first(store: tuple[Stored, Sql]) -> None:
    access, sql = store
    _recorded(access)
    sql("UPDATE crm_access_log SET principal = 'x' WHERE position = 3")
    sql("DELETE FROM crm_access_log WHERE position = 1")
    broken: Any = verify_access(access)[1]
    assert (broken.kind, broken.position) == (BreakKind.DELETED, 1)
