"""An API process's erasure watch (`services.erasure_watch`) over a store in memory: each
check reaches back before the previous one, a newly erased customer is reported once,
and failed checks are tried again rather than ending the watch."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from uuid import UUID, uuid4

import pytest

from consumers.keyring import Keyring, MemoryKeyStore
from services.erasure_watch import OVERLAP, ErasureWatch


class Tombstones:
    """The key store's tombstones as `erased_since` reads them, on the store's clock;
    `failures` checks fail first (the store unreachable)."""

    def __init__(self) -> None:
        self.time = datetime(2026, 12, 5, 12, tzinfo=UTC)
        self.erased_at: dict[UUID, datetime] = {}
        self.asked: list[datetime | None] = []
        self.failures = 0

    async def erased_since(
        self, since: datetime | None, otherwise: timedelta
    ) -> tuple[datetime, list[UUID]]:
        if self.failures:
            self.failures -= 1
            raise OSError("connection refused")
        self.asked.append(since)
        start = self.time - otherwise if since is None else since
        return self.time, [s for s, at in self.erased_at.items() if at >= start]


@pytest.mark.anyio
async def test_a_check_finds_an_erasure_stamped_before_the_previous_check_but_seen_after() -> None:
    store, keyring, told = Tombstones(), Keyring(MemoryKeyStore()), list[set[UUID]]()
    watch = ErasureWatch(store, keyring, told.append)
    first = store.time
    assert await watch.check() == set()
    late = uuid4()  # stamped a second before the first check, committed after its snapshot
    store.erased_at[late] = first - timedelta(seconds=1)
    store.time = first + timedelta(seconds=5)
    assert await watch.check() == {late}
    assert await watch.check() == set()  # reported once
    assert told == [{late}]
    assert store.asked == [None, first - OVERLAP, store.time - OVERLAP]
    assert keyring.known_erased(late) is True


@pytest.mark.anyio
async def test_the_watch_outlives_failed_checks() -> None:
    store, keyring, told = Tombstones(), Keyring(MemoryKeyStore()), list[set[UUID]]()
    erased = uuid4()
    store.erased_at[erased] = store.time
    store.failures = 3
    watch = ErasureWatch(store, keyring, told.append, interval=0)
    watch.start()
    try:
        for _ in range(1000):
            if told:
                break
            await asyncio.sleep(0)
    finally:
        await watch.stop()
    assert (store.failures, told) == (0, [{erased}])
    assert keyring.checked_as_of == store.time
