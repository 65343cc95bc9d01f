"""A throw-away PostgreSQL database for one benchmark run or test, dropped afterwards.

`DROP DATABASE ... WITH (FORCE)` terminates the sessions still connected, but not an
autovacuum worker (it runs as the bootstrap superuser, and PostgreSQL then answers
InsufficientPrivilege): a database that was just written to heavily may have one for a
moment, so the drop is retried for a few seconds.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from urllib.parse import urlsplit, urlunsplit

import psycopg
from psycopg import errors, sql

DROP_ATTEMPTS = 20
DROP_WAIT_SECONDS = 0.25


@contextmanager
def fresh_database(server_url: str, prefix: str = "crm_bench") -> Iterator[str]:
    name = f"{prefix}_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(server_url, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        yield urlunsplit(urlsplit(server_url)._replace(path=f"/{name}"))
    finally:
        drop_database(server_url, name)


def drop_database(server_url: str, name: str) -> None:
    drop = sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
    with psycopg.connect(server_url, autocommit=True) as conn:
        for attempt in range(1, DROP_ATTEMPTS + 1):
            try:
                conn.execute(drop)
                return
            except (errors.InsufficientPrivilege, errors.ObjectInUse):
                if attempt == DROP_ATTEMPTS:
                    raise
                time.sleep(DROP_WAIT_SECONDS)
