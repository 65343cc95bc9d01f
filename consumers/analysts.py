"""The analysts' SQL role on PostgreSQL: read the read models' stable views, nothing else.

A group role per database, `<database>_analysts` (NOLOGIN), holds the privileges:
`CONNECT` on the database, `USAGE` on each projection's stable schema (`sales`,
`support`, `marketing`, `shared`, `stats`) and `SELECT` on its views, except those a
projection keeps from analysts (`Table.analysts`: the search index). Nothing on the
event store, the key store, principals, idempotency, the relay's position, the
projections' generation schemas or their bookkeeping. Each analyst is a LOGIN role in
that group, read-only by default (`default_transaction_read_only`), its password given
to PostgreSQL as a SCRAM verifier so that no statement or log line carries it.

Each login's role settings (`role_settings`) also bound how long its transactions may
sit idle and its statements run, so that a forgotten transaction does not hold a view's
lock for hours. They are defaults a session may change (`SET`), as it may leave
read-only mode; a rebuild's switch does not rely on them (`consumers.pg_lock_wait`).
Every grant gives every login of the group this version's settings (its password left
as it is), so granting anyone after an upgrade brings the older logins up to date; a
session takes them as it connects.

A rebuild's switch drops and recreates a projection's stable schema; the switch calls
`grant_views` in the same transaction, so the grants follow every new generation.

Personal columns in the views hold sealed values: analysts see no personal data, as the
API's masking would have it, whatever SQL they write.

I/O: PostgreSQL.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import re
from collections.abc import Iterable
from typing import Any

from psycopg import Connection, sql

SCRAM_ITERATIONS = 4096
IDLE_IN_TRANSACTION_TIMEOUT = "60s"
"""An analyst's session whose transaction stays idle this long is ended by the server
(`idle_in_transaction_session_timeout`). A transaction left open after one `SELECT` (a BI
tool, psycopg without autocommit) holds its views' locks: a rebuild's switch waits for
it (`consumers.pg_lock_wait`)."""
STATEMENT_TIMEOUT = "5min"
"""An analyst's statement running this long is cancelled (`statement_timeout`): it too
holds its views' locks while it runs."""
SESSION_END_WAIT_MS = 5000
"""How long a revoke waits for each of the login's sessions to end (and drop its
temporary tables) before dropping what it owns."""


ANALYST_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_.-]{0,62}")
"""A plain role name: PostgreSQL truncates longer ones to 63 bytes, so a longer name would
make a login other than the one the printed URL names."""


class NotAnAnalyst(ValueError):  # noqa: N818 - reads as the refusal it is
    """The name belongs to a role that is not an analysts' login: it is left alone."""


class AnalystNameError(ValueError):
    """A name that is not a plain role name (`ANALYST_NAME`)."""


def checked_name(name: str) -> str:
    if not ANALYST_NAME.fullmatch(name):
        raise AnalystNameError(
            f"bad analyst name {name[:80]!r}: a letter or _, then letters, digits, _ . -;"
            " at most 63 in all"
        )
    return name


def group_role(conn: Connection[Any]) -> str:
    row = conn.execute("SELECT current_database()").fetchone()
    assert row is not None
    return f"{row[0]}_analysts"[:63]


def grant_views(conn: Connection[Any], schema: str, views: Iterable[str]) -> None:
    """Let the analysts' group read `views` of `schema`, if the group exists yet."""
    group = group_role(conn)
    if not _exists(conn, group):
        return
    conn.execute(
        sql.SQL("GRANT USAGE ON SCHEMA {} TO {}").format(
            sql.Identifier(schema), sql.Identifier(group)
        )
    )
    for view in views:
        conn.execute(
            sql.SQL("GRANT SELECT ON {} TO {}").format(
                sql.Identifier(schema, view), sql.Identifier(group)
            )
        )


def grant_login(
    conn: Connection[Any], name: str, password: str, schemas: dict[str, list[str]]
) -> None:
    """Create (or give a new password to) analyst `name`, in the group, which gets the
    database and every view of `schemas` (schema -> views) that exists now; `name` and
    every other login of the group get `role_settings`."""
    name = checked_name(name)
    group = group_role(conn)
    with conn.transaction():
        if not _exists(conn, group):
            conn.execute(sql.SQL("CREATE ROLE {} NOLOGIN").format(sql.Identifier(group)))
        conn.execute(
            sql.SQL("GRANT CONNECT ON DATABASE {} TO {}").format(
                _database(conn), sql.Identifier(group)
            )
        )
        _login(conn, name, group, scram_verifier(password))
        for login in _logins(conn, group):
            _apply_settings(conn, login)
        for schema, views in schemas.items():
            if _schema_exists(conn, schema):
                grant_views(conn, schema, views)


def revoke_login(conn: Connection[Any], name: str) -> None:
    """Drop analyst `name` (only a login of this database's analysts' group), with its
    sessions and what it owns.

    A session can leave read-only mode (`BEGIN READ WRITE`) and make what PostgreSQL lets
    every role make: temporary tables, large objects (`lo_create`). Those made `DROP ROLE`
    fail, so the login stayed, and a session open at the revoke went on. So: no new
    sessions, its sessions ended (on every database of the server), what it owns here
    dropped, then the role. `conn` must be in autocommit: the first steps hold even if
    the drop fails (it owns objects in another database: `DependentObjectsStillExist`)."""
    name = checked_name(name)
    group = group_role(conn)
    if not _exists(conn, name):
        return
    if not _member(conn, name, group):
        raise NotAnAnalyst(f"role {name!r} is not an analyst login of this database")
    role = sql.Identifier(name)
    conn.execute(sql.SQL("ALTER ROLE {} NOLOGIN").format(role))
    # membership lets a CREATEROLE service end the role's sessions and drop what it owns
    conn.execute(sql.SQL("GRANT {} TO CURRENT_USER").format(role))
    conn.execute(
        "SELECT pg_terminate_backend(pid, %s) FROM pg_stat_activity WHERE usename = %s",
        (SESSION_END_WAIT_MS, name),
    )
    with conn.transaction():
        conn.execute(sql.SQL("DROP OWNED BY {}").format(role))
        conn.execute(sql.SQL("DROP ROLE {}").format(role))


def _login(conn: Connection[Any], name: str, group: str, verifier: str) -> None:
    role, secret = sql.Identifier(name), sql.Literal(verifier)
    if not _exists(conn, name):
        conn.execute(
            sql.SQL("CREATE ROLE {} LOGIN PASSWORD {} IN ROLE {}").format(
                role, secret, sql.Identifier(group)
            )
        )
    elif _member(conn, name, group):
        conn.execute(sql.SQL("ALTER ROLE {} PASSWORD {}").format(role, secret))
    else:
        raise NotAnAnalyst(f"role {name!r} exists and is not an analyst login: left alone")


def role_settings() -> dict[str, str]:
    """What every analyst's login has set (`ALTER ROLE ... SET`): read-only by default,
    and the timeouts."""
    return {
        "default_transaction_read_only": "on",
        "idle_in_transaction_session_timeout": IDLE_IN_TRANSACTION_TIMEOUT,
        "statement_timeout": STATEMENT_TIMEOUT,
    }


def _apply_settings(conn: Connection[Any], login: str) -> None:
    for setting, value in role_settings().items():
        conn.execute(
            sql.SQL("ALTER ROLE {} SET {} = {}").format(
                sql.Identifier(login), sql.Identifier(setting), sql.Literal(value)
            )
        )


def _logins(conn: Connection[Any], group: str) -> list[str]:
    """The roles that can log in and are members of the analysts' group."""
    rows = conn.execute(
        "SELECT r.rolname FROM pg_auth_members m JOIN pg_roles r ON r.oid = m.member"
        " JOIN pg_roles g ON g.oid = m.roleid WHERE g.rolname = %s AND r.rolcanlogin"
        " ORDER BY r.rolname",
        (group,),
    ).fetchall()
    return [row[0] for row in rows]


def _database(conn: Connection[Any]) -> sql.Identifier:
    row = conn.execute("SELECT current_database()").fetchone()
    assert row is not None
    return sql.Identifier(row[0])


def _exists(conn: Connection[Any], role: str) -> bool:
    return conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (role,)).fetchone() is not None


def _member(conn: Connection[Any], role: str, group: str) -> bool:
    row = conn.execute(
        "SELECT 1 FROM pg_auth_members m JOIN pg_roles r ON r.oid = m.member"
        " JOIN pg_roles g ON g.oid = m.roleid WHERE r.rolname = %s AND g.rolname = %s",
        (role, group),
    ).fetchone()
    return row is not None


def _schema_exists(conn: Connection[Any], schema: str) -> bool:
    query = "SELECT 1 FROM pg_namespace WHERE nspname = %s"
    return conn.execute(query, (schema,)).fetchone() is not None


def scram_verifier(password: str, iterations: int = SCRAM_ITERATIONS) -> str:
    """The SCRAM-SHA-256 verifier PostgreSQL stores for `password` (RFC 5802/7677)."""
    salt = os.urandom(16)
    salted = hashlib.pbkdf2_hmac("sha256", password.encode(), salt, iterations)
    client_key = hmac.new(salted, b"Client Key", hashlib.sha256).digest()
    stored_key = hashlib.sha256(client_key).digest()
    server_key = hmac.new(salted, b"Server Key", hashlib.sha256).digest()
    encoded = [base64.b64encode(part).decode() for part in (salt, stored_key, server_key)]
    return f"SCRAM-SHA-256${iterations}:{encoded[0]}${encoded[1]}:{encoded[2]}"
