"""Other processes' erasures, noticed by an API process within a second.

An erasure destroys the customer's data key in the shared key store; every process that
holds the key in memory must stop using it. Without news from the store, a process
trusts a key for `KEY_CACHE_SECONDS` after fetching it and then fetches it again: at
2,000 customers that was a key query for every few PATCHes, ~20 us of CPU a command.

An API process on PostgreSQL asks instead, every `CHECK_SECONDS`, which keys were
destroyed since its previous check (`PG_ERASED_SINCE`: a partial index, since erasures
are rare) and tells its keyring (`Keyring.checked`). Its keys then stay trusted while the
checks keep succeeding, and another process's erasure reaches it within `CHECK_SECONDS`
and a query rather than `KEY_CACHE_SECONDS`. It also drops the plaintext it holds of
those customers (`on_erased`: cached aggregates and kept customers), as the process
that erased them did.

Each check reaches back `OVERLAP` (on the store's clock) before the previous one, so an
erasure stamped just before a check's snapshot but committed after it is found by the
next. A check that fails (PostgreSQL restarting) is logged once and tried again every
`CHECK_SECONDS`; until one succeeds, keys expire as they would without checks.
I/O: through its `ErasureSource` (`services.pg_reads.PostgresReads`).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Protocol
from uuid import UUID

import structlog

from consumers.keyring import Keyring
from services.periodic import Periodic

CHECK_SECONDS = 0.5
OVERLAP = timedelta(seconds=60)
log = structlog.get_logger("crm.erasure_watch")


class ErasureSource(Protocol):
    async def erased_since(
        self, since: datetime | None, otherwise: timedelta
    ) -> tuple[datetime, list[UUID]]:
        """The store's time, and the subjects whose keys were destroyed at or after
        `since` (None: `otherwise` before the store's time)."""
        ...


class ErasureWatch(Periodic):
    def __init__(
        self,
        source: ErasureSource,
        keyring: Keyring,
        on_erased: Callable[[set[UUID]], None],
        interval: float = CHECK_SECONDS,
    ) -> None:
        self._source = source
        self._keyring = keyring
        self._on_erased = on_erased
        super().__init__(interval, "erasure check", log)

    async def step(self) -> set[UUID]:
        return await self.check()

    async def check(self) -> set[UUID]:
        """One check; the customers it found erased that this process had not known."""
        sent = self._keyring.now()
        last = self._keyring.checked_as_of
        since = None if last is None else last - OVERLAP
        as_of, erased = await self._source.erased_since(since, OVERLAP)
        news = self._keyring.checked(sent, as_of, erased)
        if news:
            self._on_erased(news)
        return news
