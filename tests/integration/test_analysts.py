"""`crm analysts grant NAME`: a read-only PostgreSQL login that reads the read models'
stable views and nothing else, sees no personal data in them, keeps its grants across a
rebuild's switch, and whose forgotten transactions and long statements the server ends."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit, urlunsplit

import psycopg
import pytest
from litestar.testing import TestClient
from psycopg import errors, sql
from psycopg_pool import ConnectionPool

from bench.databases import fresh_database
from consumers import analysts
from consumers.follower import rebuild_from_store
from consumers.readmodel_store import analyst_views, public_tables
from consumers.relay_position import PostgresRelayPosition
from consumers.store_postgres import PostgresStore
from projections import PROJECTIONS
from services.cli import main
from services.event_store import open_event_store
from tests.e2e.processes import eventually
from tests.integration.api_support import EmbeddedApi, embedded_api


@pytest.fixture
def database(server_url: str) -> Iterator[str]:
    """A fresh database; its analysts' group role is dropped after it."""
    with fresh_database(server_url, prefix="crm_analysts") as url:
        yield url
    group = f"{urlsplit(url).path.lstrip('/')}_analysts"
    with psycopg.connect(server_url, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(group)))


def _fill(api: EmbeddedApi, mark: str) -> None:
    """A customer, a conversation and a task with personal values made of `mark`."""
    admin = api.token("root", "it", "admin")
    with TestClient(app=api.app) as client:
        body = {"name": f"{mark} name", "email": f"{mark}@example.com", "address": mark,
                "owner_department": "sales"}  # fmt: skip
        customer = client.post("/v1/customers", json=body, headers=admin).json()["id"]
        opened = {"customer_id": customer, "channel": "email", "subject": mark}
        client.post("/v1/conversations", json=opened, headers=admin)
        task = {"customer_id": customer, "title": mark, "department": "sales"}
        keyed = admin | {"Idempotency-Key": mark}
        assert client.post("/v1/tasks", json=task, headers=keyed).status_code == 201
        api.catch_up()
        found = client.get("/v1/customers", params={"email": f"{mark}@example.com"}, headers=admin)
        assert found.json()["items"], found.text  # the search key exists, terms are stored


def _grant(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], url: str,
           name: str) -> str:  # fmt: skip
    monkeypatch.setenv("CRM_DATABASE_URL", url)
    assert main(["analysts", "grant", name]) == 0
    printed = capsys.readouterr().out
    return printed.split("password ", 1)[1].split()[0]


def _as(url: str, name: str, password: str) -> psycopg.Connection[Any]:
    parts = urlsplit(url)
    netloc = f"{quote(name)}:{quote(password)}@{parts.hostname}:{parts.port}"
    return psycopg.connect(urlunsplit(parts._replace(netloc=netloc)), autocommit=True)


def _everything_else(url: str) -> list[sql.Composable]:
    """Every table of the database outside the stable views analysts may read."""
    with psycopg.connect(url) as conn:
        rows = conn.execute(
            "SELECT schemaname, tablename FROM pg_tables"
            " WHERE schemaname NOT IN ('pg_catalog', 'information_schema')"
        ).fetchall()
    tables: list[sql.Composable] = [sql.Identifier(schema, table) for schema, table in rows]
    return [*tables, sql.Identifier("shared", "search_terms")]


def test_an_analyst_reads_the_read_models_and_nothing_else(
    database: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    mark, name = f"zq{uuid.uuid4().hex[:10]}", f"ann_{uuid.uuid4().hex[:8]}"
    with embedded_api(tmp_path, database_url=database) as api:
        _fill(api, mark)
        password = _grant(monkeypatch, capsys, database, name)
        try:
            with _as(database, name, password) as analyst:
                _reads_views_without_personal_data(analyst, mark)
                refused = _everything_else(database)
                assert len(refused) > 20  # event store, keys, principals, generations...
                for table in refused:
                    with pytest.raises(errors.InsufficientPrivilege):
                        analyst.execute(sql.SQL("SELECT * FROM {} LIMIT 1").format(table))
                with pytest.raises(errors.ReadOnlySqlTransaction):
                    analyst.execute("CREATE TEMP TABLE t (x int)")
            rebuild_from_store(api.runtime.app, api.store, PROJECTIONS["shared"])
            with _as(database, name, password) as analyst:  # grants follow the switch
                _reads_views_without_personal_data(analyst, mark)
        finally:
            monkeypatch.setenv("CRM_DATABASE_URL", database)
            assert main(["analysts", "revoke", name]) == 0


def _reads_views_without_personal_data(analyst: psycopg.Connection[Any], mark: str) -> None:
    seen: list[Any] = []
    for projection in PROJECTIONS.values():
        for view in analyst_views(projection):
            query = sql.SQL("SELECT * FROM {}").format(sql.Identifier(projection.name, view))
            seen += analyst.execute(query).fetchall()
    names = [row for row in seen if any(str(v).startswith("enc:v1:") for v in row)]
    assert names, "the views hold the sealed personal values"
    assert mark not in repr(seen)


def test_a_revoke_ends_the_analysts_sessions_and_drops_what_it_made(
    database: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A session may leave read-only mode and make a large object and a temporary table:
    `DROP ROLE` then failed (a traceback), the login stayed and its session read on."""
    name = f"ann_{uuid.uuid4().hex[:8]}"
    password = _grant(monkeypatch, capsys, database, name)
    analyst = _as(database, name, password)
    with analyst.transaction():
        analyst.execute("SET TRANSACTION READ WRITE")
        made = analyst.execute("SELECT lo_create(0)").fetchone()
        analyst.execute("CREATE TEMP TABLE kept (x int) ON COMMIT PRESERVE ROWS")
    assert made is not None
    assert main(["analysts", "revoke", name]) == 0
    with pytest.raises(psycopg.OperationalError):  # its session was ended
        analyst.execute("SELECT 1")
    analyst.close()
    with psycopg.connect(database) as conn:
        assert conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (name,)).fetchone() is None
        lo = conn.execute("SELECT 1 FROM pg_largeobject_metadata WHERE oid = %s", made)
        assert lo.fetchone() is None
    with pytest.raises(psycopg.OperationalError):
        _as(database, name, password)


def test_a_role_that_is_no_analyst_is_left_alone(
    database: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("CRM_DATABASE_URL", database)
    user = urlsplit(database).username or "crm"
    assert main(["analysts", "grant", user]) == 1
    assert "not an analyst" in capsys.readouterr().err
    assert main(["analysts", "revoke", user]) == 1


def test_every_projection_has_views_for_analysts() -> None:
    for projection in PROJECTIONS.values():
        assert analyst_views(projection), projection.name
        assert set(analyst_views(projection)) <= {t.name for t in public_tables(projection)}


@pytest.mark.parametrize("name", ["", "a" * 64, 'x"; DROP ROLE crm; --', "two words"])
def test_a_name_that_is_no_plain_role_name_is_refused_and_creates_nothing(
    database: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
    name: str,
) -> None:  # fmt: skip
    """PostgreSQL truncates a role name to 63 bytes: a longer one made a login other than
    the one the printed URL names; an empty one was an SQL error."""
    monkeypatch.setenv("CRM_DATABASE_URL", database)
    # Roles are the server's, shared with tests running at the same time: this test's
    # are the ones its names could make (as sent, or as PostgreSQL truncates them), and
    # the group this database's logins join.
    mine = "SELECT rolname FROM pg_roles WHERE rolname = ANY(%s) OR rolname LIKE %s ORDER BY 1"
    names = [name, name[:63]]
    group = f"{database.rsplit('/', 1)[1]}_analysts"
    with psycopg.connect(database) as conn:
        before = conn.execute(mine, (names, f"{group}%")).fetchall()
    assert main(["analysts", "grant", name]) == 1
    assert "bad analyst name" in capsys.readouterr().err
    with psycopg.connect(database) as conn:
        assert conn.execute(mine, (names, f"{group}%")).fetchall() == before
        assert conn.execute("SELECT 1 FROM pg_roles WHERE rolname = 'crm'").fetchone()


def test_no_lock_an_analyst_can_take_keeps_the_processes_from_starting_or_rebuilding(
    database: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Every process creating its tables, and every generation change, waited for an
    advisory lock, which any login may take: an analyst holding them kept every `crm`
    process from starting until their session ended. The locks are tables' now, which
    an analyst may not lock."""
    open_event_store(database, None).close()  # the tables exist, as in any restart
    PostgresStore(database, max_size=1).close()
    name = f"eve_{uuid.uuid4().hex[:8]}"
    analyst = _as(database, name, _grant(monkeypatch, capsys, database, name))
    for advisory in (0x63726D, 0x70726A):  # the ids the processes used, read from the source
        analyst.execute("SELECT pg_advisory_lock(%s)", (advisory,))
    for table in ("crm_ddl_lock", "crm_projections"):
        with pytest.raises(errors.InsufficientPrivilege), analyst.transaction():
            analyst.execute(sql.SQL("LOCK TABLE {}").format(sql.Identifier(table)))
    projection = PROJECTIONS["sales"]
    errors_seen: list[BaseException] = []

    def start_and_rebuild() -> None:
        try:
            open_event_store(database, None).close()
            with ConnectionPool(database, min_size=1, max_size=2, open=True) as pool:
                PostgresRelayPosition(pool)
            store = PostgresStore(database, max_size=2)
            try:
                store.install(projection)
                store.switch(projection, store.create_generation(projection))
            finally:
                store.close()
        except BaseException as error:  # asserted below
            errors_seen.append(error)

    starting = threading.Thread(target=start_and_rebuild, daemon=True)
    starting.start()
    starting.join(timeout=120)  # a bound on waiting for ever, not a speed
    still_waiting = starting.is_alive()
    analyst.close()  # its locks go with it: a thread still waiting ends now
    starting.join()
    assert not still_waiting, "a process start or a rebuild waited for the analyst's lock"
    assert errors_seen == []


def _settings(database: str, name: str) -> dict[str, str]:
    """The role settings of login `name` (every database)."""
    with psycopg.connect(database) as conn:
        row = conn.execute(
            "SELECT s.setconfig FROM pg_db_role_setting s JOIN pg_roles r ON r.oid = s.setrole"
            " WHERE r.rolname = %s AND s.setdatabase = 0",
            (name,),
        ).fetchone()
    return dict(entry.split("=", 1) for entry in (row[0] if row else []))


def test_an_analyst_login_carries_the_timeouts_and_a_grant_gives_them_to_older_logins(
    database: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A transaction left open after one `SELECT` held its views' locks for as long as the
    session lasted (a rebuild's switch waited for it): the server now ends it."""
    older, newer = f"ann_{uuid.uuid4().hex[:8]}", f"bob_{uuid.uuid4().hex[:8]}"
    expected = {
        "default_transaction_read_only": "on",
        "idle_in_transaction_session_timeout": analysts.IDLE_IN_TRANSACTION_TIMEOUT,
        "statement_timeout": analysts.STATEMENT_TIMEOUT,
    }
    try:
        password = _grant(monkeypatch, capsys, database, older)
        assert _settings(database, older) == expected
        with psycopg.connect(database, autocommit=True) as conn:  # as an older version left it
            role = sql.Identifier(older)
            conn.execute(sql.SQL("ALTER ROLE {} RESET ALL").format(role))
            conn.execute(
                sql.SQL("ALTER ROLE {} SET default_transaction_read_only = on").format(role)
            )
        _grant(monkeypatch, capsys, database, newer)
        assert _settings(database, newer) == expected
        assert _settings(database, older) == expected  # brought up to date...
        with _as(database, older, password) as session:  # ...its password left as it was
            shown = session.execute("SHOW statement_timeout").fetchone()
            assert shown == (analysts.STATEMENT_TIMEOUT,)
    finally:
        for name in (older, newer):
            assert main(["analysts", "revoke", name]) == 0


def test_the_server_ends_an_analysts_idle_transaction(
    database: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(analysts, "IDLE_IN_TRANSACTION_TIMEOUT", "1s")  # not a minute's wait
    name = f"ann_{uuid.uuid4().hex[:8]}"
    analyst = _as(database, name, _grant(monkeypatch, capsys, database, name))
    try:
        analyst.execute("BEGIN")
        analyst.execute("SELECT 1")  # and leaves the transaction open

        def ended() -> bool:
            with psycopg.connect(database) as conn:
                query = "SELECT 1 FROM pg_stat_activity WHERE usename = %s"
                return conn.execute(query, (name,)).fetchone() is None

        eventually(ended, within=60, what="the server ending the idle transaction's session")
        with pytest.raises((errors.IdleInTransactionSessionTimeout, psycopg.OperationalError)):
            analyst.execute("SELECT 1")
    finally:
        analyst.close()
        assert main(["analysts", "revoke", name]) == 0
