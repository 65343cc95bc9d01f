"""Processes that start together (`crm api`, `crm relay`, `crm consume ...`) all create
their tables if missing. `CREATE TABLE IF NOT EXISTS` is not safe against a concurrent
twin (the loser fails on a unique violation in `pg_type`), so every creator runs under
one lock (`consumers.pg_ddl`); here many start at once on a fresh database."""

from __future__ import annotations

import threading
from collections.abc import Callable

from psycopg_pool import ConnectionPool

from consumers.key_stores import PostgresKeyStore
from consumers.relay_position import PostgresRelayPosition
from consumers.store_postgres import PostgresStore
from services.event_store import open_event_store
from services.idempotency_store import PostgresDatabase
from services.principals_store import PostgresPrincipalTable

ROUNDS = 3
STARTERS = 6


def start_together(creators: list[Callable[[], object]]) -> list[BaseException]:
    """Run every creator on its own thread, released at the same instant; their errors."""
    errors: list[BaseException] = []
    barrier = threading.Barrier(len(creators))

    def run(create: Callable[[], object]) -> None:
        barrier.wait()
        try:
            create()
        except BaseException as error:  # collected and asserted by the caller
            errors.append(error)

    threads = [threading.Thread(target=run, args=(create,)) for create in creators]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return errors


def test_every_table_creator_survives_starting_together(pg_url: str) -> None:
    with ConnectionPool(pg_url, min_size=STARTERS, max_size=STARTERS * 6, open=True) as pool:
        creators: list[Callable[[], object]] = [
            lambda: PostgresStore(pg_url, max_size=1).close(),
            lambda: PostgresKeyStore(pool),
            lambda: PostgresRelayPosition(pool),
            lambda: PostgresDatabase(pool),
            lambda: PostgresPrincipalTable(pool),
            lambda: open_event_store(pg_url, None).close(),
        ]
        for round_ in range(ROUNDS):
            with pool.connection() as conn:  # every round starts from missing tables
                conn.execute(
                    "DROP TABLE IF EXISTS crm_projections, crm_subject_keys, crm_relay_position,"
                    " crm_idempotency, crm_principals, crm_events, crm_snapshots, crm_ddl_lock"
                )
            errors = start_together(creators * STARTERS)
            assert errors == [], f"round {round_}: {errors[:3]}"
