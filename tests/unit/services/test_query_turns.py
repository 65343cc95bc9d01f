"""Each principal's read-model queries take turns of their own: a principal's queries past
its part wait behind its own, in order, and are refused (429, `Retry-After`) when their
turn does not come within the deadline; other principals' queries are not held up; every
way a query ends gives its turn back, and nothing is kept of a principal without one."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from types import SimpleNamespace
from typing import Any, cast

import psycopg
import pytest

from services.api.error_responses import problem_response
from services.api.http_errors import TooManyQueries
from services.api.problem_table import problem_for
from services.api.query_turns import QueryTurns
from services.read_deadline import QueryTimeoutError

HOURS = 3600.0  # a wait no test reaches: what ends it is the test's own doing


class Holder:
    """A query holding one of its principal's turns until `end` is set."""

    def __init__(self, turns: QueryTurns, principal: str, started: list[str]) -> None:
        self.end = asyncio.Event()
        self.task = asyncio.create_task(self._hold(turns, principal, started))

    async def _hold(self, turns: QueryTurns, principal: str, started: list[str]) -> None:
        async with turns.turn(principal):
            started.append(principal)
            await self.end.wait()


async def settled() -> None:
    """Every task that can run has run up to its next wait."""
    for _ in range(5):
        await asyncio.sleep(0)


def run(scenario: Callable[[], Any]) -> Any:
    return asyncio.run(scenario())


def test_past_its_part_a_principal_waits_behind_its_own_and_others_do_not() -> None:
    async def scenario() -> list[str]:
        turns, started = QueryTurns(2, HOURS), list[str]()
        sams = [Holder(turns, "sam", started) for _ in range(3)]
        await settled()
        assert (started, turns.held("sam")) == (["sam", "sam"], 3)  # the third waits
        ann = Holder(turns, "ann", started)
        await settled()
        assert started[-1] == "ann"  # while sam's two still hold theirs
        for holder in [*sams, ann]:
            holder.end.set()
        await asyncio.gather(*(h.task for h in [*sams, ann]))
        return started

    assert run(scenario) == ["sam", "sam", "ann", "sam"]


def test_a_principal_s_waiting_queries_take_its_turns_in_the_order_they_asked() -> None:
    async def scenario() -> list[int]:
        turns, order = QueryTurns(1, HOURS), list[int]()

        async def query(n: int) -> None:
            async with turns.turn("sam"):
                order.append(n)
                await asyncio.sleep(0)

        await asyncio.gather(*(query(n) for n in range(6)))
        return order

    assert run(scenario) == list(range(6))


def test_a_query_whose_turn_does_not_come_within_the_wait_is_a_429() -> None:
    async def scenario() -> BaseException:
        turns, started = QueryTurns(1, 0.05), list[str]()
        holder = Holder(turns, "sam", started)
        await settled()
        with pytest.raises(TooManyQueries) as refused:
            async with turns.turn("sam"):
                raise AssertionError("sam's turn is held")
        async with turns.turn("ann"):  # another principal's comes at once
            pass
        holder.end.set()
        await holder.task
        assert turns.held("sam") == 0
        async with turns.turn("sam"):  # and sam's, once its own query ended
            pass
        return refused.value

    refused = run(scenario)
    assert problem_for(refused)[:2] == (429, "too-many-queries")
    assert answered(refused).headers["Retry-After"] == "1"


def test_every_way_a_query_ends_gives_its_turn_back_and_nothing_stays_kept() -> None:
    async def scenario() -> QueryTurns:
        turns, started = QueryTurns(1, HOURS), list[str]()
        holder = Holder(turns, "sam", started)
        await settled()
        waiting = Holder(turns, "sam", started)  # the client goes away while it waits
        await settled()
        waiting.task.cancel()
        with pytest.raises(ValueError, match="failed"):  # a query that fails
            async with turns.turn("ann"):
                raise ValueError("failed")
        holder.end.set()
        await holder.task
        with pytest.raises(asyncio.CancelledError):
            await waiting.task
        assert started == ["sam"]
        return turns

    turns = run(scenario)
    assert (turns.held("sam"), turns.held("ann")) == (0, 0)
    assert turns._parts == {}  # what the turns keep between queries: nothing


def test_a_query_handed_a_turn_as_it_goes_away_passes_the_turn_on() -> None:
    async def scenario() -> tuple[list[str], QueryTurns]:
        turns, started = QueryTurns(1, 10), list[str]()  # a lost turn: `second` refused

        async def query(name: str) -> None:
            async with turns.turn("sam"):
                started.append(name)

        async with turns.turn("sam"):
            first, second = (
                asyncio.create_task(query("first")),
                asyncio.create_task(query("second")),
            )
            await settled()
        first.cancel()  # handed sam's turn by the block's end, gone before it ran
        await asyncio.gather(first, second, return_exceptions=True)
        return started, turns

    started, turns = run(scenario)
    assert started == ["second"]
    assert turns._parts == {}


def answered(error: Exception) -> Any:
    """The API's answer to `error` (its problem+json response)."""
    request = SimpleNamespace(url=SimpleNamespace(path="/v1/departments/sales/customers"))
    return problem_response(cast(Any, request), error)


def cancelled_past(seconds: float) -> Exception:
    """A query cancelled past a deadline of `seconds`, as the reads raise it, wrapped."""
    try:
        try:
            raise psycopg.errors.QueryCanceled("canceling statement due to statement timeout")
        except psycopg.errors.QueryCanceled as error:
            raise QueryTimeoutError(seconds) from error
    except QueryTimeoutError as error:
        wrapper = RuntimeError("a read failed")
        wrapper.__cause__ = error
        return wrapper


@pytest.mark.parametrize(
    ("seconds", "retry_after"), [(0.05, "1"), (1.0, "1"), (1.5, "2"), (30.0, "30")]
)
def test_a_query_timeout_asks_a_retry_after_its_deadline(seconds: float, retry_after: str) -> None:
    answer = answered(cancelled_past(seconds))
    assert (answer.status_code, answer.headers["Retry-After"]) == (503, retry_after)
    assert answer.content["type"].endswith("/query-timeout")


def test_a_driver_s_cancel_no_deadline_wraps_asks_the_default_deadline_s_wait() -> None:
    answer = answered(psycopg.errors.QueryCanceled("canceling statement due to user request"))
    assert (answer.status_code, answer.headers["Retry-After"]) == (503, "1")
