"""Read models of N customers for the search benchmark, written straight with COPY.

A replay of a million registrations would take longer than everything it is there
for, so the rows are made the way a replay makes them and copied in: each customer is
registered through the domain (`Customer.register`), its event sealed with a data key
of its own (`codec.seal`, the keyring), and the rows the `shared` and `marketing`
projections make of it (their own `apply`), with the blind-index terms a consumer
derives from it (`consumers.blind_index.search_terms`, under the database's own search
key), are binary-COPYed into the live generations' tables. The data keys go to
`crm_subject_keys`. Queries then find rows, terms and keys exactly as a replay would
have left them. Only the tables the measured queries read are filled
(`TABLES`: not the timeline, orders or the search fields' working state), and every
customer has one owning department (no shares).

I/O: the read-model store's database (tables, COPY, ANALYZE) and its key table.
"""

from __future__ import annotations

import random
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any, NamedTuple

from psycopg import Connection, sql
from psycopg_pool import ConnectionPool

from bench.replay_data import BenchKeyStore, copy_keys
from consumers.blind_index import search_terms
from consumers.key_stores import PostgresKeyStore
from consumers.keyring import Keyring
from consumers.pg_copy import staged_rows
from consumers.pg_statements import PG_TYPES
from consumers.store_postgres import PostgresStore
from domain import codec
from domain.base import Context, DomainEvent
from domain.customer import Customer, CustomerRegistered
from projections import PROJECTIONS
from projections.base import Fact, KeyValues, Row, Table, Upsert

DEPARTMENTS = ("sales", "support", "marketing")
FIRST = ("Ada", "Ben", "Chloe", "Dmitri", "Elif", "Femi", "Greta", "Hiro", "Ines", "Jonas")
LAST = ("Adler", "Brandt", "Costa", "Dubois", "Eriksen", "Fischer", "Garcia", "Hoffmann")
TABLES = {
    "shared": ("customers", "customer_departments", "search_terms"),
    "marketing": ("customers",),
}
"""The tables the measured queries read: searches and department pages."""
CHUNK = 5000
"""Customers per COPY round (their keys and rows are kept in memory until then)."""
START = datetime(2024, 1, 1, tzinfo=UTC)


class Probe(NamedTuple):
    """A stored customer and the values a search for it gives."""

    customer_id: uuid.UUID
    department: str
    email: str
    phone: str
    name: str


class Customers(NamedTuple):
    stored: int
    probes: list[Probe]


class SeedKeys(BenchKeyStore):
    """One chunk's data keys in memory, and the database's search key."""

    def __init__(self, search: bytes) -> None:
        super().__init__()
        self._search = search

    def search_key(self) -> bytes:
        return self._search


class _NoRows:
    """`projections.base.Rows` of an empty read model: every customer is new."""

    def get(self, table: str, key: KeyValues) -> Row | None:
        return None


def values(n: int, rng: random.Random) -> dict[str, Any]:
    """The registration of customer number `n`: unique e-mail and phone, a common name.

    Names repeat across customers (10 first names, 8 last names, a number word), as
    real names do; e-mail and phone are unique, like the exact matches they stand for."""
    first, last = rng.choice(FIRST), rng.choice(LAST)
    return {
        "name": f"{first} {last} {n % 1000}",
        "company": f"Company {n % 20_000}",
        "email": f"{first}.{last}.{n}@example.com".lower(),
        "phone": f"+4930{n:09d}",
        "address": f"Street {n}, Berlin",
        "owner_department": rng.choice(DEPARTMENTS),
        "tags": tuple(rng.sample(("vip", "b2b", "trial", "churn-risk"), 2)),
        "consents": {"email_marketing": rng.random() < 0.5},
    }


def registration(n: int, rng: random.Random) -> CustomerRegistered:
    """A customer registered through the domain, with its metadata."""
    ctx = Context(
        actor="seeder",
        actor_department="sales",
        occurred_at=START + timedelta(seconds=n),
        correlation_id=f"bench-search-{n}",
    )
    customer = Customer.register(ctx, customer_id=uuid.UUID(int=rng.getrandbits(128), version=4),
                                 **values(n, rng))  # fmt: skip
    (event,) = customer.collect_events()
    assert isinstance(event, CustomerRegistered)
    return event


def rows_of(event: DomainEvent, keyring: Keyring) -> dict[tuple[str, str], list[Row]]:
    """The rows the projections make of one registration: sealed as in a replay, with
    the search terms of its plaintext values (what a consumer derives before sealing
    reaches the projection), keyed by (projection, table) for the `TABLES` only."""
    sealed = codec.seal(event, keyring)
    shared = PROJECTIONS["shared"]
    terms = search_terms(event, keyring, shared.search_fields)
    facts: list[tuple[str, Fact]] = [("shared", sealed), ("marketing", sealed)]
    facts += [("shared", terms)] if terms is not None else []
    made: dict[tuple[str, str], list[Row]] = {}
    for name, fact in facts:
        for change in PROJECTIONS[name].apply(fact, _NoRows()):
            if isinstance(change, Upsert) and change.table in TABLES[name]:
                made.setdefault((name, change.table), []).append(change.row)
    return made


def seed(store: PostgresStore, keys: ConnectionPool, count: int, probes: int) -> Customers:
    """Write `count` customers into the live `shared` and `marketing` read models (made
    first); keep `probes` of them, spread over all, to search for."""
    schemas = {name: f"{name}_v{store.install(PROJECTIONS[name])}" for name in TABLES}
    rng, search = random.Random(15), PostgresKeyStore(keys).search_key()
    every = max(1, count // probes)
    found: list[Probe] = []
    for start in range(0, count, CHUNK):
        key_store = SeedKeys(search)
        keyring = Keyring(key_store)
        made: dict[tuple[str, str], list[Row]] = {}
        for n in range(start, min(count, start + CHUNK)):
            event = registration(n, rng)
            for where, rows in rows_of(event, keyring).items():
                made.setdefault(where, []).extend(rows)
            if n % every == 0:
                found.append(_probe(event))
        copy_keys(key_store.keys, keys)
        with store.pool.connection() as conn, conn.transaction():
            for (name, table), rows in made.items():
                _copy(conn, schemas[name], _table(name, table), rows)
    _analyze(store, schemas)
    return Customers(count, found)


def _probe(event: CustomerRegistered) -> Probe:
    assert event.email is not None
    assert event.phone is not None
    return Probe(event.originator_id, event.owner_department, event.email, event.phone, event.name)


def _table(projection: str, name: str) -> Table:
    return next(t for t in PROJECTIONS[projection].tables if t.name == name)


def _copy(conn: Connection[Any], schema: str, table: Table, rows: list[Row]) -> None:
    statement = sql.SQL("COPY {} ({}) FROM STDIN (FORMAT BINARY)").format(
        sql.Identifier(schema, table.name),
        sql.SQL(", ").join(map(sql.Identifier, table.column_names)),
    )
    with conn.cursor() as cursor, cursor.copy(statement) as copy:
        copy.set_types([PG_TYPES[column.type] for column in table.columns])
        for row in staged_rows(table, rows):
            copy.write_row(row)


def _analyze(store: PostgresStore, schemas: dict[str, str]) -> None:
    """Planner statistics for the copied tables (autovacuum would, minutes later)."""
    with store.pool.connection() as conn:
        for name, tables in TABLES.items():
            for table in tables:
                conn.execute(sql.SQL("ANALYZE {}").format(sql.Identifier(schemas[name], table)))


def sample(probes: list[Probe], count: int, seed: int) -> Iterator[Probe]:
    """`count` probes drawn at random (with repeats when there are fewer)."""
    rng = random.Random(seed)
    for _ in range(count):
        yield rng.choice(probes)
