"""What `AsyncBatchWriter` answers when connections are lost around a batch that went out:
its positions once a retry finds it stored, else `CommitUnknownError`, which the API
answers as 503 `outcome-unknown` whatever the last attempt met. The connection is
scripted here (a fake: the writer's real paths run against PostgreSQL in
tests/integration/test_idempotency_commit_cut.py)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from eventsourcing.persistence import StoredEvent

from services.api.problem_table import problem_for
from services.batch_refusals import CommitUnknownError
from services.group_commit import StoreFailedError
from services.pg_batch_recorder import AsyncBatchWriter

LOST = psycopg.OperationalError("server closed the connection unexpectedly")


class ScriptedWriter(AsyncBatchWriter):
    """Each `_insert` and `_stored` takes the next step of its script: an exception to
    raise, or what to return. `_insert` marks the batch sent, as the real one does."""

    RETRY_WAIT = 0.0

    def __init__(self, inserts: list[Any], stored: list[Any]) -> None:
        super().__init__(recorder=None)  # type: ignore[arg-type]
        self.inserts, self.stored = iter(inserts), iter(stored)

    async def _insert(self, columns: tuple[list[Any], ...]) -> list[int]:
        self._sent = True
        ids: list[int] = _step(self.inserts)
        return ids

    async def _stored(self, columns: tuple[list[Any], ...]) -> list[int] | None:
        ids: list[int] | None = _step(self.stored)
        return ids

    async def _discard(self) -> None:
        pass


def _step(script: Iterator[Any]) -> Any:
    step = next(script)
    if isinstance(step, BaseException):
        raise step
    return step


def batch() -> list[StoredEvent]:
    return [StoredEvent(uuid.uuid4(), 2, "tests:Event", b"{}")]


def test_a_lost_look_up_of_a_committed_batch_is_retried_until_it_finds_it() -> None:
    """Attempt 1 committed and lost its answer; attempt 2 met the batch (a duplicate) and
    lost the look-up as well; attempt 3 finds it: its positions, not an error."""
    duplicate = psycopg.errors.UniqueViolation("duplicate key value")
    writer = ScriptedWriter([LOST, duplicate, duplicate], stored=[LOST, [7]])
    assert asyncio.run(writer.insert_events(batch())) == [7]


@pytest.mark.parametrize(
    "last",
    [
        psycopg.errors.LockNotAvailable("canceling statement due to lock timeout"),
        psycopg.OperationalError("connection refused"),
    ],
    ids=["lock-timeout", "refused"],
)
def test_a_batch_sent_and_never_confirmed_is_an_outcome_unknown(last: Exception) -> None:
    writer = ScriptedWriter([LOST] + [last] * (AsyncBatchWriter.ATTEMPTS - 1), stored=[])
    with pytest.raises(CommitUnknownError) as raised:
        asyncio.run(writer.insert_events(batch()))
    failed = StoreFailedError("the batch holding this command failed")
    failed.__cause__ = raised.value
    assert problem_for(failed)[:2] == (503, "outcome-unknown")
