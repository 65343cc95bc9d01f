"""The API's background actions (`services.api.app._every`): a failing one is logged and
run again, and stopping cancels it."""

from __future__ import annotations

import asyncio

from services.api.app import _every, _in_background


def test_a_failing_background_action_runs_again_and_stops_when_cancelled() -> None:
    runs: list[int] = []

    def action() -> None:
        runs.append(len(runs))
        if len(runs) == 1:
            raise RuntimeError("the first run fails")

    async def scenario() -> int:
        start, stop = _in_background(lambda: _every(0.001, action))
        start()
        async with asyncio.timeout(5):
            while len(runs) < 3:
                await asyncio.sleep(0.001)
        await stop()
        stopped_at = len(runs)
        await asyncio.sleep(0.01)
        return len(runs) - stopped_at

    assert asyncio.run(scenario()) == 0  # no run after stop
    assert len(runs) >= 3  # the failure did not end it
