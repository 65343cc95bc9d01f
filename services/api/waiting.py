"""Read-your-writes without threads: `?min_position=N` waits on the event loop.

`Positions` knows the event store's head (as far as this process has seen it: its own
commits, or a refresh when a client names a position beyond it) and how far each set of
projections has applied. A position beyond the head is refused at once (400): nothing
will ever reach it. A waiter is a future; one poller task per process asks how far the
projections got (one query per poll for every waiter, on a worker thread) and resolves
the futures it passed, so a thousand waiters cost what one does and hold no thread. The
embedded follower also `poke`s it after each batch, so waiters wake without delay.
I/O: none itself; it calls the probes it is given (event-store head, applied positions).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Sequence

import anyio

from services.api.http_errors import BadRequest, NotCaughtUp

Names = tuple[str, ...]
POLL_SECONDS = 0.02


class Positions:
    def __init__(
        self,
        head: Callable[[], int],
        applied: Callable[[Sequence[str]], int] | None,
        wait_seconds: float,
    ) -> None:
        self._head_probe, self._applied_probe = head, applied
        self.wait_seconds = wait_seconds
        self.head = 0
        self._applied: dict[Names, int] = {}
        self._waiters: dict[Names, list[tuple[int, asyncio.Future[None]]]] = {}
        self._poked: asyncio.Event | None = None
        self._poller: asyncio.Task[None] | None = None

    def waiting(self) -> int:
        """How many readers are waiting now."""
        return sum(len(waiting) for waiting in self._waiters.values())

    def advance(self, position: int) -> None:
        """A position this process committed: the head is at least there."""
        self.head = max(self.head, position)

    def poke(self) -> None:
        """Projections moved (the embedded follower says so): check waiters now. Thread-safe."""
        poller, poked = self._poller, self._poked
        if poller is not None and poked is not None and not poller.get_loop().is_closed():
            poller.get_loop().call_soon_threadsafe(poked.set)

    async def within_head(self, position: int | None) -> None:
        """400 unless `position` (if any) is stored already: a read of the event store
        then sees it, and a read model can reach it."""
        if position is None or position <= self.head:
            return
        self.advance(await anyio.to_thread.run_sync(self._head_probe))
        if position > self.head:
            raise BadRequest(f"min_position {position} is beyond the event store's head")

    async def applied(self, names: Names, position: int | None) -> None:
        """Return once the projections `names` have applied `position`; 503 after the
        read wait (CRM_READ_WAIT_SECONDS), with Retry-After."""
        await self.within_head(position)
        if position is None or self._applied.get(names, 0) >= position:
            return
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.setdefault(names, []).append((position, future))
        self._start()
        try:
            await asyncio.wait_for(asyncio.shield(future), self.wait_seconds)
        except TimeoutError:
            raise NotCaughtUp(position, self._applied.get(names, 0), self.wait_seconds) from None
        finally:
            waiting = self._waiters.get(names, [])
            if (position, future) in waiting:
                waiting.remove((position, future))

    def _start(self) -> None:
        if self._poller is None or self._poller.done():
            self._poked = asyncio.Event()
            self._poller = asyncio.get_running_loop().create_task(self._poll(self._poked))

    async def _poll(self, poked: asyncio.Event) -> None:
        """While anyone waits: ask how far each waited-on set of projections got, wake
        the waiters it passed, then sleep until poked or the next poll."""
        while any(self._waiters.values()):
            for names in [n for n, waiting in self._waiters.items() if waiting]:
                reached = await anyio.to_thread.run_sync(self._probe, names)
                self._applied[names] = max(self._applied.get(names, 0), reached)
                for position, future in self._waiters[names]:
                    if position <= self._applied[names] and not future.done():
                        future.set_result(None)
            poked.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(poked.wait(), POLL_SECONDS)

    def _probe(self, names: Names) -> int:
        if self._applied_probe is None:
            return 0
        return self._applied_probe(names)
