"""A full disk or database is a 503 `storage-full` problem, and a database out of reach a
503 `event-store-unavailable`, wherever it is wrapped."""

from __future__ import annotations

import errno
import sqlite3
from pathlib import Path

import psycopg
from eventsourcing.persistence import OperationalError, ProgrammingError

from services.api.errors import problem_for, storage_full
from services.group_commit import StoreFailedError


def sqlite_full(tmp_path: Path) -> sqlite3.Error:
    """SQLite's own SQLITE_FULL (a full disk gives the same), from a page limit."""
    conn = sqlite3.connect(tmp_path / "full.db")
    conn.execute("CREATE TABLE t (x)")
    pages = conn.execute("PRAGMA page_count").fetchone()[0]
    conn.execute(f"PRAGMA max_page_count = {pages}")
    try:
        conn.execute("INSERT INTO t VALUES (zeroblob(100000))")
    except sqlite3.OperationalError as error:
        return error
    finally:
        conn.close()
    raise AssertionError("the insert did not fill the database")


def wrapped(cause: BaseException) -> BaseException:
    """As the event store and the group committer hand it to the API."""
    persistence = OperationalError(str(cause))
    persistence.__cause__ = cause
    failed = StoreFailedError("the batch holding this command failed")
    failed.__cause__ = persistence
    return failed


def test_full_storage_is_a_503_of_its_own(tmp_path: Path) -> None:
    for cause in (
        sqlite_full(tmp_path),
        psycopg.errors.DiskFull("could not extend file"),
        OSError(errno.ENOSPC, "No space left on device"),
    ):
        assert storage_full(wrapped(cause)), cause
        assert problem_for(wrapped(cause))[:2] == (503, "storage-full")


def test_a_database_out_of_reach_is_a_503_however_wrapped() -> None:
    """A group-commit batch that failed when PostgreSQL went away (the soak saw a 500)."""
    lost = wrapped(psycopg.OperationalError("server closed the connection unexpectedly"))
    assert not storage_full(lost)
    assert problem_for(lost)[:2] == (503, "event-store-unavailable")


def test_other_storage_errors_stay_internal() -> None:
    failed = StoreFailedError("the batch holding this command failed")
    failed.__cause__ = ProgrammingError("no such table: stored_events")
    assert not storage_full(failed)
    assert problem_for(failed)[0] == 500
