"""One holder at a time, handed round the principals waiting: an aggregate's turn for
its commands in this process (`services.commands`).

First come, first served let one principal keeping many commands in flight on a shared
customer or conversation put another's command behind all of them (red team: 64 of
one agent's PATCHes on a customer took another agent's PATCH there from a p50 of 4 ms
to 228 ms). A `FairTurn` hands a released turn to the next principal in rotation, and
within a principal to its oldest command: another principal's command waits behind the
one holding the turn and at most one of each other principal's, and one principal's own
commands still all run, in the order they came (none is refused: a service sending many
changes of one aggregate at once is served as before). Waiting costs no thread.
I/O: none.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque


class FairTurn:
    """The turn of one aggregate; `users`: commands holding or awaiting it (its owner
    forgets it at none)."""

    __slots__ = ("held", "rotation", "users", "waiting")

    def __init__(self) -> None:
        self.held = False
        self.users = 0
        self.waiting: dict[str, deque[asyncio.Future[None]]] = {}  # by principal, oldest first
        self.rotation: deque[str] = deque()  # the principals waiting, next first

    async def take(self, principal: str) -> None:
        """The turn, for one of `principal`'s commands: at once when nobody holds it (then
        nobody waits: a released turn is handed straight on), else in rotation."""
        if not self.held:
            self.held = True
            return
        waiter = asyncio.get_running_loop().create_future()
        queue = self.waiting.get(principal)
        if queue is None:
            queue = self.waiting[principal] = deque()
            self.rotation.append(principal)
        queue.append(waiter)
        try:
            await waiter
        except BaseException:  # the request went away
            if waiter.done() and not waiter.cancelled():  # handed the turn meanwhile
                self.give_back()
            else:
                with contextlib.suppress(ValueError):  # or passed over by a turn handed on
                    queue.remove(waiter)
                if not queue and self.waiting.get(principal) is queue:
                    del self.waiting[principal]
                    self.rotation.remove(principal)
            raise

    def give_back(self) -> None:
        """The turn to the next principal in rotation (its oldest command still waiting),
        else to nobody."""
        while self.rotation:
            principal = self.rotation.popleft()
            queue = self.waiting[principal]
            waiter = queue.popleft()
            if queue:
                self.rotation.append(principal)
            else:
                del self.waiting[principal]
            if not waiter.done():
                waiter.set_result(None)
                return
        self.held = False


class FairTurns:
    """The turns of many aggregates, by `UUID.int`, each kept while a command holds or
    awaits it: a plain dict and a count (a UUID hashes in Python; a
    `WeakValueDictionary` cost five calls)."""

    __slots__ = ("_by_key",)

    def __init__(self) -> None:
        self._by_key: dict[int, FairTurn] = {}

    def __len__(self) -> int:
        return len(self._by_key)

    async def take(self, key: int, principal: str) -> FairTurn:
        """The turn of aggregate `key`, for one of `principal`'s commands (`give_back`)."""
        turn = self._by_key.get(key)
        if turn is None:
            turn = self._by_key[key] = FairTurn()
        turn.users += 1
        try:
            await turn.take(principal)
        except BaseException:
            self._leave(key, turn)
            raise
        return turn

    def give_back(self, key: int, turn: FairTurn) -> None:
        turn.give_back()
        self._leave(key, turn)

    def _leave(self, key: int, turn: FairTurn) -> None:
        turn.users -= 1
        if not turn.users:
            del self._by_key[key]
