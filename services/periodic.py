"""A step an API process runs on its event loop now and then every few seconds, until it
stops: the erasure watch (`services.erasure_watch`) and the erasure sweep
(`services.erasure_sweep`).

A step that raises (its store away or locked) is logged once while it keeps failing,
and once when it succeeds again; the next step retries. No I/O of its own.
"""

from __future__ import annotations

import asyncio
from contextlib import suppress
from typing import Any


class Periodic:
    """Runs `step()` every `interval` seconds from `start()` to `stop()`; subclasses say
    what a step is, and `what` names it in the log ("erasure check")."""

    def __init__(self, interval: float, what: str, log: Any) -> None:
        self._interval, self._what, self._log = interval, what, log
        self._task: asyncio.Task[None] | None = None

    async def step(self) -> Any:
        raise NotImplementedError("a periodic task says what its step is")

    async def run(self) -> None:
        """Step now, then every `interval` seconds until cancelled, whatever one raises."""
        failing = False
        while True:
            try:
                await self.step()
            except Exception as error:  # the store away or locked: the next step retries
                if not failing:
                    self._log.warning(f"{self._what} failed; trying again", error=repr(error))
                failing = True
            else:
                if failing:
                    self._log.info(f"{self._what}s resumed")
                failing = False
            await asyncio.sleep(self._interval)

    def start(self) -> None:
        """Run on the current event loop (the API's, at startup)."""
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self.run())

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with suppress(asyncio.CancelledError):
                await task
