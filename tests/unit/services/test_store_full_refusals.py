"""A full disk is a refusal, not a lost connection (review F3, F4): what the batch writer
raises when PostgreSQL answers an error on a connection still open, what the API
answers and whether the key is released, the `outcome-unknown` wording with and without
a key, `/readyz`'s `writes` check, and a process's health saying "full", not "down"."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from types import SimpleNamespace
from typing import Any

import psycopg
import pytest
from litestar import Request

from consumers.outage import POSTGRES, Dependencies, Down, is_full
from consumers.process_health import ProcessHealth
from services.api import readiness
from services.api.command_outcome import stored_nothing
from services.api.error_responses import problem_response
from services.api.problem_table import problem_for
from services.batch_refusals import CommitUnknownError, StoreRefusedError
from services.group_commit import StoreFailedError
from services.storage_refusals import WINDOW_S, StorageRefusals
from tests.unit.services.test_batch_writer_outcomes import LOST, ScriptedWriter, batch

FULL = psycopg.errors.DiskFull("could not extend file: No space left on device")
LOCKED = psycopg.errors.LockNotAvailable("canceling statement due to lock timeout")
DEADLOCK = psycopg.errors.DeadlockDetected("deadlock detected")


class OpenWriter(ScriptedWriter):
    """`ScriptedWriter` on a connection that stays open (`closed`), as after an error the
    server answered; `closed=True`: one the server closed (FATAL)."""

    def __init__(self, inserts: list[Any], *, closed: bool = False) -> None:
        super().__init__(inserts, stored=[])
        self._conn = SimpleNamespace(closed=closed)  # type: ignore[assignment]
        self.attempts = 0

    async def _insert(self, columns: tuple[list[Any], ...]) -> list[int]:
        self.attempts += 1
        return await super()._insert(columns)


def failed(cause: BaseException) -> StoreFailedError:
    """As group commit hands a batch's error to its commands."""
    wrapper = StoreFailedError("the batch holding this command failed")
    wrapper.__cause__ = cause
    return wrapper


@pytest.mark.parametrize(
    ("answer", "slug"),
    [(FULL, "storage-full"), (LOCKED, "storage-busy"), (DEADLOCK, "storage-busy")],
    ids=["full", "lock", "deadlock"],
)
def test_an_error_the_server_answered_is_a_refusal_at_once(answer: Exception, slug: str) -> None:
    writer = OpenWriter([answer])
    with pytest.raises(StoreRefusedError) as raised:
        asyncio.run(writer.insert_events(batch()))
    assert writer.attempts == 1  # not retried as a lost connection
    assert raised.value.__cause__ is answer
    assert problem_for(failed(raised.value))[:2] == (503, slug)
    assert stored_nothing(raised.value)  # the key is released (group commit hands it on)


def test_an_answer_after_a_lost_attempt_leaves_the_outcome_unknown() -> None:
    """Attempt 1 sent the batch and lost its answer: a full disk met later says nothing
    of it (it may have committed), so the writer keeps trying to learn, then gives up."""
    writer = OpenWriter([LOST] + [FULL] * (ScriptedWriter.ATTEMPTS - 1))
    with pytest.raises(CommitUnknownError) as raised:
        asyncio.run(writer.insert_events(batch()))
    assert writer.attempts == ScriptedWriter.ATTEMPTS
    assert problem_for(failed(raised.value))[:2] == (503, "outcome-unknown")
    assert not stored_nothing(raised.value)


def test_an_error_that_closed_the_connection_is_no_answer() -> None:
    """A FATAL error (the server ending the connection as it failed) may have come as
    the commit happened: lost, not a refusal."""
    shutdown = psycopg.errors.AdminShutdown("terminating connection")
    writer = OpenWriter([shutdown] * ScriptedWriter.ATTEMPTS, closed=True)
    with pytest.raises(CommitUnknownError):
        asyncio.run(writer.insert_events(batch()))


def request(headers: dict[str, str]) -> Request[Any, Any, Any]:
    raw = [(k.lower().encode(), v.encode()) for k, v in headers.items()]
    scope = {"type": "http", "method": "POST", "path": "/v1/customers", "headers": raw}
    return Request(scope)  # type: ignore[arg-type]


@pytest.mark.parametrize("keyed", [True, False], ids=["keyed", "unkeyed"])
def test_outcome_unknown_says_what_a_retry_can_learn(keyed: bool) -> None:
    """Red team: a command sent without a key was told to retry "with the same
    Idempotency-Key"."""
    headers = {"Idempotency-Key": "k-1"} if keyed else {}
    answer = problem_response(request(headers), failed(CommitUnknownError("lost")))
    detail = answer.content["detail"]
    assert answer.status_code == 503
    assert ("same Idempotency-Key" in detail) is keyed, detail
    assert ("without an Idempotency-Key" in detail) is not keyed, detail


class Commits:
    head = 5


def test_the_writes_check_reports_refusals_until_a_commit_or_the_window() -> None:
    now = [100.0]
    refusals, commits = StorageRefusals(clock=lambda: now[0]), Commits()
    assert refusals.check() is None
    refusals.refused(commits)
    now[0] += 3
    refusals.refused(commits)
    assert "storage full: 2 requests refused" in (refusals.check() or "")
    commits.head = 6  # a command committed since: space is back
    assert refusals.check() is None
    refusals.refused(commits)
    now[0] += WINDOW_S + 1  # nobody wrote since: told to wait that long, then forgotten
    assert refusals.check() is None


def test_a_dependency_refusing_writes_for_space_is_full_not_down() -> None:
    seen: list[frozenset[str]] = []
    deps = Dependencies("consume customers", on_change=seen.append)
    deps.lost(POSTGRES, FULL)
    deps.lost(POSTGRES, psycopg.OperationalError("FATAL: could not write init file"))
    assert isinstance(seen[-1], Down)
    assert (set(seen[-1]), set(seen[-1].full)) == ({POSTGRES}, {POSTGRES})
    deps.back(POSTGRES)
    deps.lost(POSTGRES, psycopg.OperationalError("connection refused"))
    assert isinstance(seen[-1], Down)
    assert seen[-1].full == frozenset()
    assert is_full("DiskFull: could not extend file")  # a writer process's notice


def test_the_pipeline_check_says_full(monkeypatch: pytest.MonkeyPatch) -> None:
    row = ProcessHealth(
        process="consume customers", down=["postgres", "kafka"], down_since=None,
        watchdog_restarts=0, writer_restarts=0, pid=1, updated_at=datetime.now(UTC),
        full=["postgres"],
    )  # fmt: skip
    monkeypatch.setattr(readiness, "read_health", lambda pool: [row])
    said = readiness.pipeline_check(SimpleNamespace(pool=object()))  # type: ignore[arg-type]
    assert said == (
        "consume customers: kafka down; consume customers: postgres full (writes refused)"
    )
