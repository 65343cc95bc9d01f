"""A lease renewal that cannot reach the database is tried again at the next third of
the lease; it never fails the command it holds the key for."""

from __future__ import annotations

import asyncio
from typing import Any, cast

import psycopg

from services.idempotency import Idempotency, Reservation, lease_kept


class _Flaky:
    """Renewals: the first fails as a PostgreSQL restart makes them fail, then succeed."""

    lease_seconds = 0.03

    def __init__(self) -> None:
        self.calls = 0

    def renew(self, held: Any) -> bool:
        self.calls += 1
        if self.calls == 1:
            raise psycopg.OperationalError("server closed the connection unexpectedly")
        return True


def test_a_failed_renewal_neither_fails_the_command_nor_stops_renewing() -> None:
    flaky = _Flaky()

    async def command() -> str:
        async with lease_kept(cast(Idempotency, flaky), cast(Reservation, object())):
            await asyncio.sleep(0.2)  # several thirds of the lease
        return "done"

    assert asyncio.run(command()) == "done"
    assert flaky.calls >= 2  # renewed again after the failure
