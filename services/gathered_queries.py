"""Questions asked on the event loop, answered by one query for many (`Gathered`) or each at once.

Reads of current state ask the store's head, and commands catching up ask for the events
after their version, many at a time: against PostgreSQL every question asked while a query
runs goes into the next query (`Gathered`), so concurrent reads cost one query between
them and no answer is older than its question; a local source, whose query never awaits,
answers each question by itself (`Direct`). In: questions, and a query answering a list of
them in order. Out: each question's answer. I/O: only what the query given does.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import Generic, TypeVar

Q = TypeVar("Q")
R = TypeVar("R")


class Gathered(Generic[Q, R]):
    """Questions asked on the event loop, answered by one query at a time: every question
    asked while a query runs goes into the next query, which starts after each of its
    questions was asked, so no answer is older than its question.

    `query` answers a list of questions with one answer each, in their order. A failed
    query fails the callers whose questions it carried; the next query runs as usual.
    """

    def __init__(self, query: Callable[[list[Q]], Awaitable[Sequence[R]]]) -> None:
        self._query = query
        self._asked: list[Q] = []  # the next query's questions
        self._waiting: asyncio.Future[Sequence[R]] | None = None  # the next query
        self._running: asyncio.Future[Sequence[R]] | None = None  # the query under way

    async def ask(self, question: Q) -> R:
        if self._waiting is None:
            self._waiting = asyncio.ensure_future(self._next())
        index = len(self._asked)
        self._asked.append(question)
        return (await asyncio.shield(self._waiting))[index]

    async def _next(self) -> Sequence[R]:
        running = self._running
        if running is not None:
            await asyncio.wait([running])  # its callers asked before this query's did
        mine = self._running = self._waiting
        self._waiting = None  # callers from now on wait for the next query
        asked, self._asked = self._asked, []
        try:
            return await self._query(asked)
        finally:
            if self._running is mine:
                self._running = None


class Direct(Generic[Q, R]):
    """Questions answered each by a query of its own, asked at once: for a local source
    (SQLite on the loop, memory), whose query never awaits. Gathering them would cost a
    task, a future and a turn of the loop a question (~7 % of an embedded `GET`'s CPU)
    to save a query of a few microseconds; and its answer is as new as its question."""

    def __init__(self, query: Callable[[list[Q]], Awaitable[Sequence[R]]]) -> None:
        self._query = query

    async def ask(self, question: Q) -> R:
        return (await self._query([question]))[0]


Asked = Gathered[Q, R] | Direct[Q, R]
