"""PostgreSQL-only properties of a read-model batch: the round trips it costs.

Statements are counted on the wire: libpq's protocol trace lists every message a
connection sends, so a test sees what a batch really runs (the contract suite in
`test_store_contract` checks the rows).
"""

from __future__ import annotations

import tempfile
import uuid
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from psycopg import Connection, pq

from bench.workload import Workload
from consumers.projecting import Item, project
from consumers.store_postgres import PostgresStore
from projections import PROJECTIONS
from projections.base import DeleteWhere, Projection, Scrub

ITEMS = [Item("t", 0, i, i + 1, b"", e) for i, e in enumerate(Workload(seed=5).events(600))]


@contextmanager
def sent(conn: Connection[Any]) -> Iterator[list[str]]:
    """The statements `conn` executes inside the block, filled in when it ends."""
    statements: list[str] = []
    with tempfile.TemporaryFile("w+") as trace:
        conn.pgconn.trace(trace.fileno())
        conn.pgconn.set_trace_flags(pq.Trace.SUPPRESS_TIMESTAMPS | pq.Trace.REGRESS_MODE)
        try:
            yield statements
        finally:
            conn.pgconn.untrace()
            trace.seek(0)
            statements.extend(_executed(trace))


def _executed(trace: Iterable[str]) -> Iterator[str]:
    """The SQL of each statement in a libpq trace: a simple `Query`, or the `Bind` of a
    statement an earlier `Parse` named (psycopg prepares the ones it runs repeatedly)."""
    parsed: dict[str, str] = {}
    for line in trace:
        sender, _, message, fields = [*line.rstrip("\n").split("\t", 3), ""][:4]
        if sender != "F":
            continue
        if message == "Query":  # fields: "SQL"
            yield fields.split('"', 1)[1]
        elif message == "Parse":  # fields: "name" "SQL" parameter-types
            _, name, _, statement = fields.split('"', 3)
            parsed[name] = statement
        elif message == "Bind":  # fields: "portal" "name" parameters
            yield parsed.get(fields.split('"', 4)[3], "")  # "": prepared before the trace


@pytest.fixture
def store(pg_url: str) -> Iterator[PostgresStore]:
    """A store of one connection, so consecutive batches share it (and its temp tables)."""
    opened = PostgresStore(pg_url, max_size=1)
    yield opened
    opened.close()


def test_closing_set_operations_cost_one_statement_per_table_and_kind(
    store: PostgresStore,
) -> None:
    projection = PROJECTIONS["sales"]
    generation = store.install(projection)
    closing = [
        operation
        for customer in (uuid.uuid4() for _ in range(20))
        for operation in (
            DeleteWhere("tasks", "customer_id", customer),
            DeleteWhere("order_totals", "customer_id", customer),
            Scrub("customers", customer),
        )
    ]
    with store.session(projection, generation) as session, sent(session.conn) as statements:
        session.write([], closing)
    assert [s.split()[0] for s in statements] == ["DELETE", "DELETE", "UPDATE"]


def test_a_connection_creates_its_staging_tables_once(store: PostgresStore) -> None:
    projection = PROJECTIONS["shared"]
    generation = store.install(projection)
    with store.session(projection, generation) as first:
        project(first, projection, ITEMS[:300])
    with sent(first.conn) as statements, store.session(projection, generation) as second:
        assert second.conn is first.conn
        project(second, projection, ITEMS[300:])
    assert [s for s in statements if "CREATE" in s] == []
    assert [s for s in statements if s.startswith("COPY")] != []


def test_a_rolled_back_first_batch_leaves_the_staging_tables_usable(
    store: PostgresStore,
) -> None:
    """Staging tables created inside a batch would vanish with its rollback while the
    connection remembered them; they are created before it, in a transaction of their own."""
    projection = PROJECTIONS["sales"]
    generation = store.install(projection)
    with pytest.raises(RuntimeError, match="after its writes"):
        _fail_after_writing(store, projection, generation)
    with store.session(projection, generation) as session:
        project(session, projection, ITEMS[:300])
    assert store.status("sales", generation).events == 300


def _fail_after_writing(store: PostgresStore, projection: Projection, generation: int) -> None:
    with store.session(projection, generation) as session:
        project(session, projection, ITEMS[:300])
        raise RuntimeError("the batch fails after its writes")
