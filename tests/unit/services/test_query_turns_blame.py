"""A turn's query takes a place shared with other principals' through its turn: at once
when one is free, else waiting at most the deadline, as held up by others. A query of
its principal's refused for want of a turn is a 429 only when its principal's own
queries held the turns all along: when one of them waited for a shared place during
that wait, it is a 503 `query-timeout` (`SharedReadsBusy`), others' load."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import anyio
import pytest

from services.api.http_errors import SharedReadsBusy, TooManyQueries
from services.api.problem_table import problem_for
from services.api.query_turns import QueryTurns
from tests.unit.services.test_query_turns import answered, settled

WAIT = 0.05  # the deadline: only turns and places held by the test's hand outlast it


class Query:
    """A query of `principal`'s: its turn, then a shared `place` (None: none), held
    until `end` is set; `error`: what it ended with."""

    def __init__(self, turns: QueryTurns, principal: str, place: anyio.Semaphore | None) -> None:
        self.end, self.placed = asyncio.Event(), asyncio.Event()
        self.error: BaseException | None = None
        self.task = asyncio.create_task(self._run(turns, principal, place))

    async def _run(self, turns: QueryTurns, principal: str, place: anyio.Semaphore | None) -> None:
        try:
            async with turns.turn(principal) as turn:
                if place is not None:
                    await turn.take(place)
                self.placed.set()
                await self.end.wait()
                if place is not None:
                    place.release()
        except (SharedReadsBusy, TooManyQueries) as error:
            self.error = error

    async def ended(self) -> BaseException | None:
        self.end.set()
        await self.task
        return self.error


def run(scenario: Callable[[], Any]) -> Any:
    return asyncio.run(scenario())


def test_a_query_waiting_behind_its_own_queued_for_others_is_a_503_not_a_429() -> None:
    async def scenario() -> tuple[BaseException | None, BaseException | None, QueryTurns]:
        turns, place = QueryTurns(1, WAIT), anyio.Semaphore(1)
        bob = Query(turns, "bob", place)  # holds the one place till the test's end
        await bob.placed.wait()
        queued = Query(turns, "ann", place)  # ann's turn, queued behind bob's query
        waiting = Query(turns, "ann", None)  # ann's next: waits for ann's turn
        await asyncio.gather(waiting.task, queued.task)
        assert await bob.ended() is None
        assert place.value == 1  # given back by bob, never taken by ann's
        return waiting.error, queued.error, turns

    refused, gave_up, turns = run(scenario)
    assert isinstance(refused, SharedReadsBusy), refused
    assert isinstance(gave_up, SharedReadsBusy), gave_up  # its own wait: bounded
    answer = answered(refused)
    assert (answer.status_code, answer.headers["Retry-After"]) == (503, "1")
    assert answer.content["type"].endswith("/query-timeout")
    assert problem_for(gave_up)[:2] == (503, "query-timeout")
    assert turns._parts == {}


def test_a_query_whose_principal_s_turn_was_held_up_during_its_wait_is_a_503() -> None:
    """ann's query queued for the place, got it and ran on; ann's next was refused after
    that: part of its wait was for bob's query."""

    async def scenario() -> BaseException | None:
        turns, place = QueryTurns(1, 3600.0), anyio.Semaphore(1)  # ann's wait: no end of its own
        bob = Query(turns, "bob", place)
        await bob.placed.wait()
        ann = Query(turns, "ann", place)
        await settled()
        turns.wait_seconds = WAIT  # a wait is bounded as it begins: ann's next's only
        waiting = Query(turns, "ann", None)
        await settled()
        await bob.ended()
        await ann.placed.wait()  # ann's got the place, and runs on
        await waiting.task
        assert await ann.ended() is None
        return waiting.error

    assert isinstance(run(scenario), SharedReadsBusy)


@pytest.mark.parametrize("queued_first", [False, True])
def test_a_query_behind_its_own_running_queries_is_still_a_429(queued_first: bool) -> None:
    """ann's query took a free place at once (or had queued before ann's next came) and
    held it all of ann's next's wait: its own load."""

    async def scenario() -> BaseException | None:
        turns, place = QueryTurns(1, 3600.0), anyio.Semaphore(1)
        if queued_first:
            bob = Query(turns, "bob", place)
            await bob.placed.wait()
            ann = Query(turns, "ann", place)
            await settled()
            await bob.ended()
        else:
            ann = Query(turns, "ann", place)
        await ann.placed.wait()
        turns.wait_seconds = WAIT  # a wait is bounded as it begins: ann's next's only
        waiting = Query(turns, "ann", None)
        await waiting.task
        assert await ann.ended() is None
        return waiting.error

    assert isinstance(run(scenario), TooManyQueries)


def test_a_query_cancelled_while_queued_for_a_place_leaves_nothing_taken() -> None:
    async def scenario() -> tuple[QueryTurns, anyio.Semaphore]:
        turns, place = QueryTurns(1, 3600.0), anyio.Semaphore(1)
        bob = Query(turns, "bob", place)
        await bob.placed.wait()
        ann = Query(turns, "ann", place)
        await settled()
        ann.task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await ann.task
        await bob.ended()
        return turns, place

    turns, place = run(scenario)
    assert (turns._parts, place.value) == ({}, 1)
