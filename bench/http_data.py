"""Data for the HTTP benchmark, stored before any server starts.

* a seeded workload (`bench.workload`: customers, conversations, tasks, CSAT and NPS
  answers over months, in every department) saved straight into the event store, so
  department views and statistics have rows and periods to read;
* customers and open conversations of `sales` made through the command classes, the
  targets of the measured commands and reads (known-good state: never archived);
* a `sales` manager, the benchmark's principal: its reads are judged row by row by the
  access model, as staff's are (a service or admin would skip that work);
* on PostgreSQL the read models, filled by the embedded follower (the Kafka pipeline's
  projections, without Kafka); `crm run` fills its own as it starts.

I/O: the event store, key store, principals and read models of `settings`.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Iterable
from datetime import UTC, datetime
from typing import NamedTuple, TypeVar

from bench.workload import Workload
from consumers.follower import EventStoreFollower
from consumers.store_factory import open_store
from domain.base import Context
from domain.customer import Customer
from projections import PROJECTIONS
from services.access.rules import Principal, Role
from services.bootstrap import Runtime, bootstrap
from services.commands import Caller, CommandService
from services.conversation_commands import OpenConversation
from services.customer_commands import RegisterCustomer
from services.group_commit import DirectCommitter
from services.principals_store import open_principals
from services.settings import Settings

DEPARTMENT = "sales"
CALLER = Caller(
    principal=Principal(name="seeder", department=DEPARTMENT, role=Role.SERVICE),
    correlation_id="bench-http",
)
SAVE_CHUNK = 500
T = TypeVar("T")


class Seeded(NamedTuple):
    token: str
    customers: list[uuid.UUID]  # targets of the measured commands
    readers: list[uuid.UUID]  # targets of the measured reads: 10 events each, unchanged
    conversations: list[uuid.UUID]
    head: int


def seed(
    settings: Settings, *, events: int, customers: int, readers: int, conversations: int
) -> Seeded:
    """Store everything the HTTP benchmark reads and changes; the principal's token."""
    runtime = bootstrap(settings)
    try:
        store_workload(runtime, events)
        customer_ids, conversation_ids = asyncio.run(_targets(runtime, customers, conversations))
        reader_ids = store_readers(runtime, readers)
        principals = open_principals(runtime.pool, settings.data_dir, settings.departments)
        token = principals.add("bench-manager", DEPARTMENT, Role.MANAGER)
        if not settings.embedded:
            fill_read_models(runtime)
        head = runtime.app.head_position()
        return Seeded(token, customer_ids, reader_ids, conversation_ids, head)
    finally:
        runtime.close()


def store_readers(runtime: Runtime, count: int, versions: int = 10) -> list[uuid.UUID]:
    """`count` sales customers of `versions` events each (a registration, then changes
    of company), saved many per transaction: the measured reads rebuild such histories."""
    ctx = Context(
        actor="seeder", actor_department=DEPARTMENT, occurred_at=datetime.now(UTC),
        correlation_id="bench-http",
    )  # fmt: skip
    readers = [_reader(ctx, i) for i in range(count)]
    for version in range(2, versions + 1):
        for reader in readers:
            reader.update_profile(ctx, company=f"Company {version}")
    for start in range(0, count, SAVE_CHUNK):
        runtime.app.record(*readers[start : start + SAVE_CHUNK])
    return [reader.id for reader in readers]


def _reader(ctx: Context, i: int) -> Customer:
    return Customer.register(
        ctx, customer_id=uuid.uuid4(), name=f"Reader {i}", email=f"r{i}@example.com",
        phone=f"+4930{i:07d}", owner_department=DEPARTMENT, tags=["vip"],
    )  # fmt: skip


def store_workload(runtime: Runtime, events: int) -> None:
    """The workload's events, sealed by the event store's mapper, in large saves."""
    chunk = []
    for event in Workload(seed=7).events(events):
        chunk.append(event)
        if len(chunk) == SAVE_CHUNK:
            runtime.app.events.put(chunk)
            chunk = []
    if chunk:
        runtime.app.events.put(chunk)


async def _targets(
    runtime: Runtime, customers: int, conversations: int
) -> tuple[list[uuid.UUID], list[uuid.UUID]]:
    service = CommandService(runtime.app, DirectCommitter(runtime.app), runtime.keyring)
    registered = await _all(
        service.create(
            CALLER,
            RegisterCustomer(
                name=f"Customer {i}", email=f"c{i}@example.com", owner_department=DEPARTMENT
            ),
        )
        for i in range(customers)
    )
    ids = [result.id for result in registered]
    opened = await _all(
        service.create(
            CALLER,
            OpenConversation(
                customer_id=ids[i % len(ids)], channel="email", subject=f"Question {i}"
            ),
        )
        for i in range(conversations)
    )
    return ids, [result.id for result in opened]


async def _all(calls: Iterable[Awaitable[T]]) -> list[T]:
    """Run the calls 32 at a time (each a transaction of its own)."""
    pending = list(calls)
    done: list[T] = []
    for start in range(0, len(pending), 32):
        done += await asyncio.gather(*pending[start : start + 32])
    return done


def fill_read_models(runtime: Runtime) -> None:
    """Apply the whole event store to every projection's PostgreSQL read model."""
    store = open_store(runtime.settings.database_url, runtime.settings.data_dir)
    try:
        follower = EventStoreFollower(runtime.app, store, PROJECTIONS.values(), batch_size=2000)
        while follower.step():
            pass
    finally:
        store.close()
