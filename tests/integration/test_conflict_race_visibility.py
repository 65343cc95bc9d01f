"""A race lost under If-Match is judged by the access model before its 409 (PostgreSQL).

Two command services share one event store (two API processes). The first loads a
customer of its caller's department for a conditional command; before it saves, the
second hands the customer to another department, so the first's save loses the race.
Its answer must be what a fresh decision gives: a 404 (the caller may no longer read the
customer, as for an id that exists nowhere), never the 409 of a version conflict, which
names the version another department's command saved.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import TypeVar
from uuid import UUID

import pytest

from domain.base import Aggregate, NotFound
from services.access.rules import Principal, Role
from services.bootstrap import bootstrap
from services.commands import Caller, CommandService
from services.customer_commands import ChangeOwner, RegisterCustomer, TagCustomer
from services.group_commit import GroupCommitter
from services.settings import load_settings

A = TypeVar("A", bound=Aggregate)
AGENT = Caller(
    principal=Principal(name="sam", department="sales", role=Role.AGENT), correlation_id="a"
)
ADMIN = Caller(
    principal=Principal(name="root", department="it", role=Role.ADMIN), correlation_id="b"
)


def test_a_lost_race_on_a_customer_no_longer_readable_is_a_404(pg_url: str, tmp_path: Path) -> None:
    env = {"CRM_DATABASE_URL": pg_url, "CRM_DATA_DIR": str(tmp_path)}
    first, second = bootstrap(load_settings(env)), bootstrap(load_settings(env))
    committers = [GroupCommitter(r.app, window_ms=2, max_batch=50) for r in (first, second)]
    theirs = CommandService(second.app, committers[1], second.keyring)
    handed_off: list[UUID] = []

    async def loaded_then_handed_off(kind: type[A], aggregate_id: UUID) -> A:
        """The first service's load; the second's hand-off lands before it saves."""
        aggregate = await asyncio.to_thread(first.app.sealed_load, kind, aggregate_id)
        if not handed_off:
            handed_off.append(aggregate_id)
            await theirs.change(ADMIN, aggregate_id, ChangeOwner(department="support"))
        return aggregate

    mine = CommandService(first.app, committers[0], first.keyring, loader=loaded_then_handed_off)

    async def race() -> None:
        try:
            created = await theirs.create(
                ADMIN, RegisterCustomer(name="Ada", owner_department="sales")
            )
            with pytest.raises(NotFound):
                await mine.change(AGENT, created.id, TagCustomer(tag="vip"), expected=1)
            assert handed_off == [created.id]
        finally:
            for committer in committers:
                await committer.aclose()

    try:
        asyncio.run(race())
    finally:
        first.close()
        second.close()
