"""Read-your-writes in PostgreSQL mode: the applied-versions watermark is exact.

Events are applied with the same `consumers.projecting.project` the Kafka runner uses
(through the follower, which writes `_applied` the same way), in partial and out-of-order
batches, and the watermark must never claim a position whose event is not applied.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any, cast

import pytest

from consumers.follower import EventStoreFollower
from consumers.projecting import Item, project
from consumers.store_postgres import PostgresStore
from domain.base import DomainEvent
from projections import PROJECTIONS
from services.access.rules import Principal, Role
from services.api.read_positions import AppliedVersionsWatermark
from services.bootstrap import Runtime, bootstrap
from services.commands import Caller, CommandService
from services.customer_commands import RegisterCustomer
from services.group_commit import DirectCommitter
from services.settings import load_settings


@pytest.fixture
def runtime(pg_url: str, tmp_path: Path) -> Iterator[Runtime]:
    rt = bootstrap(load_settings({"CRM_DATABASE_URL": pg_url, "CRM_DATA_DIR": str(tmp_path)}))
    yield rt
    rt.close()


@pytest.fixture
def store(pg_url: str) -> Iterator[PostgresStore]:
    opened = PostgresStore(pg_url)
    yield opened
    opened.close()


def _register(runtime: Runtime, count: int) -> None:
    service = CommandService(runtime.app, DirectCommitter(runtime.app), runtime.keyring)
    principal = Principal(name="sam", department="sales", role=Role.AGENT)
    caller = Caller(principal=principal, correlation_id="test")

    async def register() -> None:
        for number in range(count):
            await service.create(caller, RegisterCustomer(name=f"Customer {number}"))

    asyncio.run(register())


def _apply(store: PostgresStore, runtime: Runtime, name: str, positions: list[int]) -> None:
    """Apply the events at `positions` (in the order given) to projection `name`."""
    projection = PROJECTIONS[name]
    follower: Any = EventStoreFollower(runtime.app, store, [projection])
    notifications = runtime.app.recorder.select_notifications(1, 1000)
    events = {n.id: cast(DomainEvent, runtime.app.mapper.to_domain_event(n)) for n in notifications}
    items = [Item("t", p, 0, p, b"", events[p]) for p in positions]  # own partitions
    with store.session(projection, follower.generations[name]) as session:
        project(session, projection, items)


def test_watermark_follows_exactly_what_each_projection_applied(
    runtime: Runtime, store: PostgresStore
) -> None:
    _register(runtime, 6)
    watermark = AppliedVersionsWatermark(store, runtime.app.recorder, runtime.app.head_position)
    assert watermark(["sales"]) == 0  # never ran
    _apply(store, runtime, "sales", [1, 2, 4, 5])  # 3 not yet: another partition, say
    assert watermark(["sales"]) == 2
    _apply(store, runtime, "shared", [1, 2, 3, 4, 5, 6])
    assert watermark(["shared"]) == 6
    assert watermark(["sales", "shared"]) == 2  # the minimum over what a query reads
    _apply(store, runtime, "sales", [3, 6])
    assert watermark(["sales", "shared"]) == 6
