"""What a command does when another process saved its aggregate first.

Commands on one aggregate take turns within a process (`services.fair_turns`), so they
never collide there. Across processes a concurrent save that wins the race shows up as
an IntegrityError: a command without If-Match is then decided again on a fresh load
after a short random pause (a few times, `retried`), since its caller expressed no
precondition; with If-Match (the version it expected) it is a `VersionConflict` (409),
as it is for a command that keeps losing.
I/O: none (the attempts do theirs).
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

from eventsourcing.persistence import IntegrityError

from domain.base import VersionConflict

R = TypeVar("R")
RETRY_SECONDS = 5.0  # how long a command without If-Match keeps deciding again
RETRY_PAUSE = 0.002  # seconds, doubled per lost race up to 50 ms: a random share is slept

CONTENDED_SECONDS = 60.0
"""For this long after losing a race to another process (a conflict on save), commands
catch a cached aggregate up with the store before deciding on it: one small query each
(or fewer: `CurrentState.caught_up` asks for those of concurrent commands together),
and a spare copy (`Aggregate.clone`) that a command losing the race again gives back to
the cache, so its retry catches up too. Otherwise every command on an aggregate the
other process wrote since would conflict and be decided again on a rebuild from the
whole history, whose cost grows with it (two API processes posting messages to 50
conversations spent 40 % of their CPU rebuilding them). A process that never loses a
race never pays the query or the copy."""


class Contention:
    """Whether this process lost a race to another lately (`CONTENDED_SECONDS`)."""

    __slots__ = ("_until",)

    def __init__(self) -> None:
        self._until = 0.0  # monotonic time

    def lost(self) -> None:
        self._until = time.monotonic() + CONTENDED_SECONDS

    def __bool__(self) -> bool:
        return time.monotonic() < self._until


async def retried(
    attempt: Callable[[], Awaitable[R]],
    expected: int | None,
    conflict: Callable[[int | None], Awaitable[VersionConflict]],
) -> R:
    """`attempt`'s answer; when another process saved first, `attempt` again after a
    random pause, unless the caller named the version it `expected` (then `conflict`).
    Each lost race means another command got through, so this ends; `RETRY_SECONDS`
    bounds it anyway (then `conflict` too, with no version expected)."""
    give_up, pause = time.monotonic() + RETRY_SECONDS, RETRY_PAUSE
    while True:
        try:
            return await attempt()
        except IntegrityError:
            if expected is not None:
                raise await conflict(expected) from None
            if time.monotonic() > give_up:
                raise await conflict(None) from None
        await asyncio.sleep(random.uniform(0, pause))
        pause = min(pause * 2, 0.05)
