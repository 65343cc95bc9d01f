"""A full disk or database is a 503 `storage-full` problem, a store locked by another
connection past its wait a 503 `storage-busy`, and a database out of reach a 503
`event-store-unavailable`, wherever it is wrapped."""

from __future__ import annotations

import errno
import sqlite3
from pathlib import Path

import psycopg
from eventsourcing.persistence import OperationalError, ProgrammingError
from litestar import Request

from services.api.error_responses import problem_response
from services.api.problem_table import problem_for
from services.api.store_troubles import UNAVAILABLE, busy, storage_full, unavailable
from services.batch_refusals import CommitUnknownError
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


def test_a_batch_sent_and_lost_is_an_outcome_unknown() -> None:
    """Its insert went out and its answer was lost: it may be stored (a client retrying
    without its Idempotency-Key may store it twice), unlike a batch never sent."""
    sent = CommitUnknownError("server closed the connection unexpectedly")
    sent.__cause__ = psycopg.OperationalError("server closed the connection unexpectedly")
    failed = StoreFailedError("the batch holding this command failed")
    failed.__cause__ = sent
    assert problem_for(failed)[:2] == (503, "outcome-unknown")


def test_a_database_out_of_reach_is_answered_without_its_address() -> None:
    """The driver's text names the database's host and port: the log has it, not the
    client (red-team review: any token holder read `connection to server at ...`)."""
    lost = wrapped(
        psycopg.OperationalError(
            'connection failed: connection to server at "10.0.0.5", port 5432 failed'
        )
    )
    scope = {"type": "http", "method": "POST", "path": "/v1/customers", "headers": []}
    answer = problem_response(Request(scope), lost)  # type: ignore[arg-type]
    assert (answer.status_code, answer.content["detail"]) == (503, UNAVAILABLE[2])


def test_other_storage_errors_stay_internal() -> None:
    failed = StoreFailedError("the batch holding this command failed")
    failed.__cause__ = ProgrammingError("no such table: stored_events")
    assert not storage_full(failed)
    assert problem_for(failed)[0] == 500


def sqlite_locked(tmp_path: Path) -> sqlite3.Error:
    """SQLite's "database is locked" (SQLITE_BUSY): another connection holds the file's
    write lock past this one's wait, as a backup or another process may."""
    holder = sqlite3.connect(tmp_path / "locked.db", isolation_level=None)
    waiter = sqlite3.connect(tmp_path / "locked.db", isolation_level=None, timeout=0)
    holder.execute("BEGIN EXCLUSIVE")
    try:
        waiter.execute("CREATE TABLE t (x)")
    except sqlite3.OperationalError as error:
        return error
    finally:
        holder.execute("ROLLBACK")
        holder.close()
        waiter.close()
    raise AssertionError("the write did not wait for the lock")


def test_a_store_locked_past_its_wait_is_a_503_of_its_own(tmp_path: Path) -> None:
    """A locked SQLite key store answered a 500 `internal-error` (red team: the erasure
    whose key it could not destroy)."""
    for cause in (
        sqlite_locked(tmp_path),
        psycopg.errors.LockNotAvailable("canceling statement due to lock timeout"),
    ):
        for error in (cause, wrapped(cause)):
            assert busy(error), error
            assert not storage_full(error), error
            assert problem_for(error)[:2] == (503, "storage-busy")
    assert not busy(wrapped(psycopg.OperationalError("server closed the connection")))
    assert not busy(sqlite_full(tmp_path))


def raised_while_handling(cause: BaseException, *, chained: bool) -> BaseException:
    """An error raised in an `except` block handling `cause`: `raise ... from cause`
    (`chained`, a wrapper), or a bug there (a KeyError in clean-up code)."""
    try:
        raise cause
    except type(cause):
        try:
            if chained:
                raise RuntimeError("wrapped") from cause
            raise KeyError("a bug in the clean-up")
        except (RuntimeError, KeyError) as error:
            return error
    raise AssertionError("nothing raised")


def test_an_error_raised_while_handling_a_store_s_trouble_is_its_own(tmp_path: Path) -> None:
    """`busy`, `storage_full` and `unavailable` followed `__context__` too, so a bug in
    code handling a lock timeout, a full disk or a lost connection was answered as that
    trouble: a 503 logged as a warning, without its traceback. Explicit wrapping (`from`)
    is still seen through."""
    for cause, slug in (
        (sqlite_locked(tmp_path), "storage-busy"),
        (
            psycopg.errors.LockNotAvailable("canceling statement due to lock timeout"),
            "storage-busy",
        ),
        (sqlite_full(tmp_path), "storage-full"),
        (OSError(errno.ENOSPC, "No space left on device"), "storage-full"),
        (psycopg.OperationalError("server closed the connection"), "event-store-unavailable"),
    ):
        bug = raised_while_handling(cause, chained=False)
        assert bug.__context__ is cause
        assert problem_for(bug)[:2] == (500, "internal-error"), (cause, problem_for(bug))
        assert [busy(bug), storage_full(bug), unavailable(bug)] == [False, False, False]
        wrapper = raised_while_handling(cause, chained=True)
        assert problem_for(wrapper)[:2] == (503, slug), cause
