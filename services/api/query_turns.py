"""Each principal's part of the places read-model queries share: one principal's costly
queries wait behind their own, not in front of everyone else's.

Read-model queries (department pages, search, timelines, statistics) share a few places
in a process, handed out in the order asked: on PostgreSQL `LIST_SHARE` of the read
connections (`services.pg_read_connections`), embedded the one worker thread a query past 20 ms
moves to (`services.api.direct_reads`). Shared by arrival alone, they went to whoever
asked most: one agent looping eight slow list queries (a filter matching little) held
them all, and another principal's department page waited 2-3 s behind the lot. So a
query first takes one of its principal's own `per_principal` turns, then asks for a
shared place: the shared queue holds at most that many queries of any one principal,
and a query waits behind at most that many of each other principal's.

A principal whose turns stay taken for `wait_seconds` (the read deadline: its queries
ahead run that long, at most) by its own running queries is answered 429
`too-many-queries` with `Retry-After` (`TooManyQueries`): it asks more at once than its
part serves, as a principal holding all its event streams does when it opens another
(`services.api.stream_slots`), and the remedy is the same, to wait for its own to end. A
503 would say the server is in trouble (and `query-timeout`, to narrow a filter), which
it is not. Unlike a stream, a query waits for its turn before it is refused: a turn
lasts milliseconds (at most the deadline), so a client loading a few lists side by side
is served in turn, and one that loops costly queries is answered at the pace of its own
turns.

A turn's query takes its shared place through the turn (`take`), and a place not free at
once is waited for at most `wait_seconds`, as held up by others: the worker thread,
embedded, may run other principals' slow queries first, one after another, and on
PostgreSQL two principals' parts fill the list share. Such a wait past the deadline is
a 503 `query-timeout` (`SharedReadsBusy`: the server was too busy for it), and so is
the refusal of a query whose principal's turns were held, at any moment of its wait, by
a query waiting so: its wait was (also) others', and a 429 would blame the caller for
it. Before, the holder's wait had no bound, and its principal's next query was a 429
"by its own queries" when the one ahead of it had not even started.
I/O: none.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
from collections import deque
from types import TracebackType

import anyio

from services.api.http_errors import SharedReadsBusy, TooManyQueries
from services.read_deadline import retry_after


class _Part:
    """One principal's turns taken, and its queries waiting for one, oldest first; how
    many of its turns' queries wait for a shared place now (`queued`), and when the last
    such wait ended (`queued_until`, the loop's clock)."""

    __slots__ = ("queued", "queued_until", "taken", "waiting")

    def __init__(self) -> None:
        self.taken = 0
        self.waiting: deque[asyncio.Future[None]] = deque()
        self.queued = 0
        self.queued_until = -math.inf


class QueryTurns:
    """At most `per_principal` read-model queries of each principal at once, on the event
    loop that serves the API (not thread-safe: the loop serialises it). A turn given back
    goes to the principal's oldest waiting query, never to one asking meanwhile. Only
    principals with a query holding or waiting for a turn are kept. (A semaphore each,
    made and dropped as their queries come and go, cost ~8 us a query; this, ~1 us.)"""

    def __init__(self, per_principal: int, wait_seconds: float) -> None:
        self.per_principal, self.wait_seconds = per_principal, wait_seconds
        self._parts: dict[str, _Part] = {}

    def turn(self, principal: str) -> _Turn:
        """One of `principal`'s turns for as long as the `async with` block runs (which
        gets the turn, to `take` a shared place in); when none came within
        `wait_seconds`, `TooManyQueries`, or `SharedReadsBusy` when a turn's query
        waited for a shared place meanwhile (see above)."""
        return _Turn(self, principal)

    def held(self, principal: str) -> int:
        """How many of `principal`'s queries hold or wait for a turn now."""
        part = self._parts.get(principal)
        return 0 if part is None else part.taken + len(part.waiting)

    async def _take(self, principal: str) -> None:
        part = self._parts.get(principal)
        if part is None:
            part = self._parts[principal] = _Part()
        if part.taken < self.per_principal and not part.waiting:
            part.taken += 1
            return
        loop = asyncio.get_running_loop()
        waiter, since = loop.create_future(), loop.time()
        part.waiting.append(waiter)
        try:
            async with asyncio.timeout(self.wait_seconds):
                await waiter
        except BaseException as error:  # timed out, or the request went away
            if waiter.done() and not waiter.cancelled():  # handed a turn meanwhile
                self._give_back(principal)
            else:
                with contextlib.suppress(ValueError):  # or passed over by a turn given back
                    part.waiting.remove(waiter)
                self._forget_idle(principal, part)
            if isinstance(error, TimeoutError):
                raise self._refused(principal, part, since) from None
            raise

    async def _queued(self, principal: str, place: anyio.Semaphore) -> None:
        """`place` in turn for a query holding one of `principal`'s turns, at most
        `wait_seconds`; meanwhile (and for its waiters, since) its part is held up."""
        part = self._parts[principal]  # kept: the query holds one of its turns
        part.queued += 1
        try:
            async with asyncio.timeout(self.wait_seconds):
                await place.acquire()
        except TimeoutError:
            raise SharedReadsBusy(self.wait_seconds) from None
        finally:
            part.queued -= 1
            part.queued_until = asyncio.get_running_loop().time()

    def _give_back(self, principal: str) -> None:
        """The turn to the oldest waiting query (still waiting), else back to none."""
        part = self._parts[principal]
        while part.waiting:
            waiter = part.waiting.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return
        part.taken -= 1
        self._forget_idle(principal, part)

    def _forget_idle(self, principal: str, part: _Part) -> None:
        if not part.taken and not part.waiting and self._parts.get(principal) is part:
            del self._parts[principal]

    def _refused(self, principal: str, part: _Part, since: float) -> Exception:
        """What a query of `principal`'s waiting for a turn since `since` is answered."""
        if part.queued or part.queued_until > since:  # its turns waited for others'
            return SharedReadsBusy(self.wait_seconds)
        return TooManyQueries(
            f"{principal}'s {self.per_principal} read-model queries at a time stayed taken"
            f" for {self.wait_seconds:g} s by its own queries; retry once they end",
            retry_after(self.wait_seconds),
        )


class _Turn:
    """`QueryTurns.turn`: an async context manager (a generator-based one cost ~1.6 us)."""

    __slots__ = ("_principal", "_turns")

    def __init__(self, turns: QueryTurns, principal: str) -> None:
        self._turns, self._principal = turns, principal

    async def __aenter__(self) -> _Turn:
        await self._turns._take(self._principal)
        return self

    async def take(self, place: anyio.Semaphore) -> None:
        """`place`, shared with other principals' queries (a worker thread, a list
        connection), for this turn's query: at once when one is free, else in turn, for
        at most the deadline (`SharedReadsBusy` past it), as held up by others. The
        caller releases it."""
        if place.value:  # free, and none waits for it (a release hands it to a waiter)
            place.acquire_nowait()
            return
        await self._turns._queued(self._principal, place)

    async def __aexit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self._turns._give_back(self._principal)
