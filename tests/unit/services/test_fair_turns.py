"""An aggregate's turn is handed round the principals waiting, oldest first within each
(`services.fair_turns`): another principal's command waits behind at most one of each
other principal's, however many one keeps in flight, and none is refused; a command
that goes away while waiting, or as it is handed the turn, never keeps it."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import Any

import pytest

from services.fair_turns import FairTurn


async def _settled() -> None:
    for _ in range(10):
        await asyncio.sleep(0)


def _holder(turn: FairTurn, principal: str, order: list[str]) -> asyncio.Task[None]:
    async def hold() -> None:
        await turn.take(principal)
        try:
            order.append(principal)
            await asyncio.sleep(0)
        finally:
            turn.give_back()

    return asyncio.create_task(hold())


def _run(scenario: Callable[[], Coroutine[Any, Any, None]]) -> None:
    asyncio.run(scenario())


def test_turns_go_round_the_principals_waiting_and_none_is_refused() -> None:
    async def scenario() -> None:
        turn, order = FairTurn(), list[str]()
        await turn.take("first")  # held while the others queue
        tasks = [_holder(turn, "ann", order) for _ in range(5)]
        await _settled()
        tasks += [_holder(turn, "bob", order), _holder(turn, "cy", order)]
        await _settled()
        tasks.append(_holder(turn, "bob", order))
        await _settled()
        turn.give_back()
        await asyncio.gather(*tasks)
        assert order == ["ann", "bob", "cy", "ann", "bob", "ann", "ann", "ann"]
        assert (turn.held, turn.waiting, list(turn.rotation)) == (False, {}, [])

    _run(scenario)


@pytest.mark.parametrize("handed", [False, True], ids=["while-waiting", "as-it-is-handed"])
def test_a_command_that_goes_away_passes_the_turn_on(handed: bool) -> None:
    async def scenario() -> None:
        turn, order = FairTurn(), list[str]()
        await turn.take("first")
        leaving = _holder(turn, "ann", order)
        await _settled()
        staying = _holder(turn, "bob", order)
        await _settled()
        if handed:
            turn.give_back()  # ann's is handed the turn, and goes away before it runs
            leaving.cancel()
        else:
            leaving.cancel()
            await _settled()
            turn.give_back()
        await asyncio.gather(staying, return_exceptions=True)
        with pytest.raises(asyncio.CancelledError):
            await leaving
        assert order == ["bob"]
        assert (turn.held, turn.waiting, list(turn.rotation)) == (False, {}, [])
        await turn.take("cy")  # free again at once
        assert turn.held

    _run(scenario)
