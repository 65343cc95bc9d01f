"""An Idempotency-Key whose first request was cut off (no `complete`, no `release`: the
database went away under it) is refused only for `LEASE_SECONDS`, then a retry of the
same request takes it over; a different request with that key is still refused."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from psycopg_pool import ConnectionPool

from services.idempotency import (
    LEASE_SECONDS,
    Idempotency,
    IdempotencyError,
    PostgresIdempotencyTable,
    SqliteIdempotencyTable,
)

pytestmark = pytest.mark.integration
STALE = f"{LEASE_SECONDS + 1} seconds"


@pytest.fixture(params=["postgres", "sqlite"])
def table(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[Idempotency, object]]:
    """The idempotency store, and a function that ages every reservation past the lease."""
    if request.param == "sqlite":
        sqlite = SqliteIdempotencyTable(tmp_path / "idempotency.db")

        def age_sqlite() -> None:
            sqlite._conn.execute("UPDATE crm_idempotency SET created_at = datetime('now', ?)",
                                 (f"-{STALE}",))  # fmt: skip

        yield Idempotency(sqlite), age_sqlite
        return
    url = request.getfixturevalue("pg_url")
    with ConnectionPool(url, min_size=1, max_size=2, open=True) as pool:

        def age_postgres() -> None:
            with pool.connection() as conn:
                conn.execute("UPDATE crm_idempotency SET created_at = now() - %s::interval",
                             (STALE,))  # fmt: skip

        yield Idempotency(PostgresIdempotencyTable(pool)), age_postgres


def test_a_cut_off_reservation_is_taken_over_after_its_lease(
    table: tuple[Idempotency, object],
) -> None:
    idempotency, age = table
    assert idempotency.begin("ops", "k1", "request") is None  # then the database went away
    with pytest.raises(IdempotencyError, match="still running"):
        idempotency.begin("ops", "k1", "request")
    age()  # type: ignore[operator]
    with pytest.raises(IdempotencyError, match="another request"):
        idempotency.begin("ops", "k1", "a different request")
    assert idempotency.begin("ops", "k1", "request") is None  # taken over
    with pytest.raises(IdempotencyError, match="still running"):
        idempotency.begin("ops", "k1", "request")  # and held again
