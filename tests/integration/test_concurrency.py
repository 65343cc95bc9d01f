"""Concurrency on PostgreSQL. Through HTTP: 50 concurrent conflicting updates to one
task with If-Match, exactly one wins per version, the rest get 409, and after retries
nothing is lost. Through group commit and the one-statement batch insert: answers
match the log, the log has no gaps, listeners are notified, and a batch with a
duplicate version stores nothing, also through the insert awaited on the event loop,
which reconnects after losing its connection."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, cast

import psycopg
import pytest
from eventsourcing.persistence import IntegrityError, StoredEvent
from litestar.testing import TestClient

from domain.base import NotFound
from domain.customer import Customer
from services.access.rules import Principal, Role
from services.api import create_app
from services.batch_refusals import BatchConflictError
from services.bootstrap import Runtime, bootstrap
from services.commands import Caller, CommandResult, CommandService
from services.customer_commands import RegisterCustomer, UpdateProfile
from services.event_store import Saved
from services.group_commit import GroupCommitter
from services.pg_batch_recorder import AsyncBatchWriter, BatchInsertRecorder, insert_columns
from services.settings import load_settings

WRITERS = 50


@pytest.fixture
def client(pg_url: str, tmp_path: Path) -> Iterator[TestClient[Any]]:
    runtime: Runtime = bootstrap(
        load_settings({"CRM_DATABASE_URL": pg_url, "CRM_DATA_DIR": str(tmp_path)})
    )
    with TestClient(app=create_app(runtime)) as test_client:
        yield test_client
    runtime.close()


def test_one_winner_per_version_and_nothing_lost(client: TestClient[Any]) -> None:
    token = client.app.state.services.principals.add("sam", "sales", "agent")
    auth = {"Authorization": f"Bearer {token}"}
    customer = client.post("/v1/customers", json={"name": "Ada"}, headers=auth).json()
    body = {"customer_id": customer["id"], "title": "start"}
    task_url = "/v1/tasks/" + client.post("/v1/tasks", json=body, headers=auth).json()["id"]

    def update(writer: int, version: int) -> int:
        headers = auth | {"If-Match": f'"{version}"'}
        response = client.patch(task_url, json={"title": f"title {writer}"}, headers=headers)
        if response.status_code == 409:
            assert response.json()["type"].endswith("/version-conflict")
        return response.status_code

    with ThreadPoolExecutor(WRITERS) as pool:
        statuses = list(pool.map(update, range(WRITERS), [1] * WRITERS))
    assert statuses.count(200) == 1
    assert statuses.count(409) == WRITERS - 1

    pending = [w for w, s in enumerate(statuses) if s == 409]
    while pending:
        version = int(client.get(task_url, headers=auth).headers["etag"].strip('"'))
        with ThreadPoolExecutor(len(pending)) as pool:
            results = list(pool.map(update, pending, [version] * len(pending)))
        assert results.count(200) == 1
        pending = [w for w, s in zip(pending, results, strict=True) if s != 200]

    auditor = client.app.state.services.principals.add("aud", "audit", "auditor")
    history = client.get(task_url + "/history", headers={"Authorization": f"Bearer {auditor}"})
    history = history.json()
    titles = {entry["data"]["title"] for entry in history[1:]}
    assert len(history) == WRITERS + 1
    assert titles == {f"title {w}" for w in range(WRITERS)}


def test_unconditional_changes_never_conflict(client: TestClient[Any]) -> None:
    """64 concurrent PATCHes without If-Match over 4 customers: no 409, every change
    applied (commands on one aggregate take turns; the caller set no precondition)."""
    token = client.app.state.services.principals.add("sam", "sales", "agent")
    auth = {"Authorization": f"Bearer {token}"}
    customers = [
        client.post("/v1/customers", json={"name": f"c{i}"}, headers=auth).json()["id"]
        for i in range(4)
    ]

    def patch(n: int) -> int:
        body = {"company": f"company {n}"}
        return client.patch(
            f"/v1/customers/{customers[n % 4]}", json=body, headers=auth
        ).status_code

    with ThreadPoolExecutor(64) as pool:
        statuses = list(pool.map(patch, range(64)))
    assert statuses == [200] * 64
    for customer in customers:
        assert client.get(f"/v1/customers/{customer}", headers=auth).json()["version"] == 17


def test_unconditional_changes_never_conflict_across_processes(pg_url: str, tmp_path: Path) -> None:
    """Two command services on one PostgreSQL (two API processes): a save that loses the
    race is decided again on a fresh load, so no command fails for lack of a precondition."""
    env = {"CRM_DATABASE_URL": pg_url, "CRM_DATA_DIR": str(tmp_path)}
    first, second = bootstrap(load_settings(env)), bootstrap(load_settings(env))

    async def workload() -> list[int]:
        committers = [GroupCommitter(r.app, window_ms=2, max_batch=50) for r in (first, second)]
        services = [
            CommandService(r.app, c, r.keyring)
            for r, c in zip((first, second), committers, strict=True)
        ]
        try:
            created = await services[0].create(SERVICE, RegisterCustomer(name="Ada"))
            changes = [set_company(services[n % 2], created.id, f"company {n}") for n in range(64)]
            results = await asyncio.gather(*changes)
        finally:
            for committer in committers:
                await committer.aclose()
        return sorted(result.version for result in results)

    try:
        assert asyncio.run(workload()) == list(range(2, 66))
    finally:
        first.close()
        second.close()


@pytest.fixture
def runtime(pg_url: str, tmp_path: Path) -> Iterator[Runtime]:
    runtime = bootstrap(load_settings({"CRM_DATABASE_URL": pg_url, "CRM_DATA_DIR": str(tmp_path)}))
    yield runtime
    runtime.close()


SERVICE = Caller(
    principal=Principal(name="svc", department="sales", role=Role.SERVICE), correlation_id="c"
)


async def set_company(
    service: CommandService, customer_id: uuid.UUID, company: str
) -> CommandResult:
    return await service.change(SERVICE, customer_id, UpdateProfile(company=company))


def test_group_commit_keeps_the_log_gapless_in_commit_order_and_notifies(
    runtime: Runtime, pg_url: str
) -> None:
    """16 callers through group commit and the one-statement insert: every answer
    is the stored (version, position), positions have no gaps, and listeners hear it."""
    committer = GroupCommitter(runtime.app, window_ms=5, max_batch=200)
    service = CommandService(runtime.app, committer, runtime.keyring)

    async def update(customer_id: uuid.UUID) -> list[CommandResult]:
        return [await set_company(service, customer_id, f"co {n}") for n in range(20)]

    async def workload() -> list[CommandResult]:
        registered = [service.create(SERVICE, RegisterCustomer(name=f"c{i}")) for i in range(16)]
        ids = [result.id for result in await asyncio.gather(*registered)]
        updates = await asyncio.gather(*(update(customer_id) for customer_id in ids))
        await committer.aclose()
        return [answer for answers in updates for answer in answers]

    with psycopg.connect(pg_url, autocommit=True) as listener:
        listener.execute("LISTEN crm_events")
        answers = asyncio.run(workload())
        assert next(listener.notifies(timeout=5, stop_after=1), None) is not None
    log = runtime.app.recorder.select_notifications(start=1, limit=10_000)
    assert [n.id for n in log] == list(range(1, 16 + 16 * 20 + 1))
    stored = {n.id: (n.originator_id, n.originator_version) for n in log}
    assert all(stored[a.position] == (a.id, a.version) for a in answers)


def test_group_commit_saves_the_others_of_a_conflicting_batch_as_one_batch(
    runtime: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Another process took the version one command of a batch holds: that command
    fails, and the batch's other commands are saved again together, in one transaction
    (not one each, each under the table lock the other process waits for)."""
    app, ctx = runtime.app, SERVICE.context()
    writes: list[int] = []

    class CountingWriter(AsyncBatchWriter):
        async def insert_events(self, stored_events: Sequence[StoredEvent]) -> list[int]:
            writes.append(len(stored_events))
            return await super().insert_events(stored_events)

    recorder = app.recorder
    assert isinstance(recorder, BatchInsertRecorder)
    monkeypatch.setattr(app, "async_writer", lambda: CountingWriter(recorder))
    taken = Customer.register(ctx, customer_id=uuid.uuid4(), name="t", owner_department="s")
    app.record(taken)
    stale, other = app.load(Customer, taken.id), app.load(Customer, taken.id)
    other.update_profile(ctx, company="another process")
    app.record(other)
    stale.update_profile(ctx, company="stale")
    fresh = [
        Customer.register(ctx, customer_id=uuid.uuid4(), name=f"f{i}", owner_department="s")
        for i in range(5)
    ]
    committer = GroupCommitter(app, window_ms=1_000, max_batch=10)

    async def command(aggregate: Customer) -> object:
        with committer.command():
            await asyncio.sleep(0)  # all six decide before any saves
            return await committer.save(aggregate)

    async def scenario() -> list[object]:
        try:
            calls = [command(aggregate) for aggregate in [fresh[0], stale, *fresh[1:]]]
            return list(await asyncio.gather(*calls, return_exceptions=True))
        finally:
            await committer.aclose()

    answers = asyncio.run(scenario())
    assert isinstance(answers.pop(1), IntegrityError)
    # a batch takes half of the six in flight: the stale one's, again without it, the rest
    assert writes == [3, 2, 3]
    log = {n.id: n.originator_id for n in recorder.select_notifications(start=1, limit=100)}
    saved = cast(list[Saved], answers)
    assert [log[s.position] for s in saved] == [f.id for f in fresh]
    assert app.load(Customer, taken.id).company == "another process"


def test_a_batch_with_a_duplicate_version_stores_nothing(runtime: Runtime) -> None:
    app, ctx = runtime.app, SERVICE.context()
    first, second = (
        Customer.register(ctx, customer_id=uuid.uuid4(), name=name, owner_department="sales")
        for name in ("a", "b")
    )
    app.record(first)
    head = app.head_position()
    stale = app.load(Customer, first.id)
    stale.update_profile(ctx, company="x")
    again = app.load(Customer, first.id)
    again.update_profile(ctx, company="y")
    app.record(stale)
    with pytest.raises(IntegrityError):
        app.record(second, again)
    assert app.head_position() == head + 1
    with pytest.raises(NotFound):
        app.load(Customer, second.id)


def test_the_async_writer_stores_nothing_of_a_batch_with_a_duplicate_version(
    runtime: Runtime,
) -> None:
    """The insert awaited on the event loop gives the recorder's answers and errors."""
    app, ctx = runtime.app, SERVICE.context()
    writer = app.async_writer()
    assert writer is not None
    first, second = (
        Customer.register(ctx, customer_id=uuid.uuid4(), name=name, owner_department="sales")
        for name in ("a", "b")
    )

    async def scenario() -> None:
        try:
            [saved] = (await app.saved_async(writer, first)).values()
            assert saved.position == app.head_position()
            stale, again = app.load(Customer, first.id), app.load(Customer, first.id)
            stale.update_profile(ctx, company="x")
            again.update_profile(ctx, company="y")
            await app.saved_async(writer, stale)
            with pytest.raises(BatchConflictError) as refused:
                await app.saved_async(writer, second, again)
            assert refused.value.aggregate_ids == {first.id}  # `second` is not taken
        finally:
            await writer.aclose()

    asyncio.run(scenario())
    assert app.load(Customer, first.id).company == "x"
    with pytest.raises(NotFound):
        app.load(Customer, second.id)


def test_the_async_writer_reconnects_after_losing_its_connection(
    runtime: Runtime, pg_url: str
) -> None:
    app, ctx = runtime.app, SERVICE.context()
    writer = app.async_writer()
    assert writer is not None
    customers = [
        Customer.register(ctx, customer_id=uuid.uuid4(), name=name, owner_department="sales")
        for name in ("a", "b")
    ]

    async def scenario() -> list[int]:
        try:
            positions = [s.position for s in (await app.saved_async(writer, customers[0])).values()]
            with psycopg.connect(pg_url, autocommit=True) as admin:
                terminated = admin.execute(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                    " WHERE datname = current_database() AND query LIKE %s",
                    ("%insert_locked%",),
                ).fetchall()
            assert terminated == [(True,)]  # the writer's connection, idle after its insert
            positions += [
                s.position for s in (await app.saved_async(writer, customers[1])).values()
            ]
            return positions
        finally:
            await writer.aclose()

    first, second = asyncio.run(scenario())
    assert second == first + 1
    assert app.load(Customer, customers[1].id).version == 1


class LostCommits:
    """Batches stored as a writer's attempt would have stored them before its connection
    was lost during the commit: the writer's next attempt is then a retry."""

    def __init__(self, runtime: Runtime, pg_url: str) -> None:
        self.app, self.url = runtime.app, pg_url
        recorder = runtime.app.recorder
        assert isinstance(recorder, BatchInsertRecorder)
        self.recorder = recorder
        self.ctx = SERVICE.context()

    def registered(self, name: str, customer_id: uuid.UUID) -> StoredEvent:
        customer = Customer.register(
            self.ctx, customer_id=customer_id, name=name, owner_department="s"
        )
        return self.app.mapper.to_stored_event(customer.collect_events()[0])

    def committed_elsewhere(self, events: list[StoredEvent]) -> list[int]:
        """Store `events` on another connection, then cut the writers' connections
        (idle after their own last insert)."""
        with psycopg.connect(self.url, autocommit=True) as admin:
            stored = admin.execute(
                self.recorder.insert_statement, insert_columns(events), binary=True
            ).fetchall()
            admin.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname ="
                " current_database() AND pid <> pg_backend_pid() AND query LIKE %s",
                ("%insert_locked%",),
            )
        return [position for (position,) in stored]


def test_the_async_writer_answers_a_batch_its_lost_connection_had_stored(
    runtime: Runtime, pg_url: str
) -> None:
    """A connection lost during the commit hides whether it happened. When it had, the
    retry finds that very batch stored and answers its positions (the command is not
    decided again on its own events); another event at the same version still conflicts."""
    lost_commits = LostCommits(runtime, pg_url)
    registered, committed_elsewhere = lost_commits.registered, lost_commits.committed_elsewhere
    writer = runtime.app.async_writer()
    assert writer is not None
    c = uuid.uuid4()
    batch = [registered("a", uuid.uuid4()), registered("b", uuid.uuid4())]
    mine, rival = registered("c", c), registered("another c", c)

    async def scenario() -> tuple[list[int], list[int]]:
        try:
            await writer.insert_events([registered("w", uuid.uuid4())])  # its connection
            committed_elsewhere([rival])  # another process's first event of customer c
            with pytest.raises(IntegrityError):
                await writer.insert_events([mine])
            await writer.insert_events([registered("w2", uuid.uuid4())])  # last: an insert
            lost = committed_elsewhere(batch)
            answered = await writer.insert_events(batch)
            return lost, answered
        finally:
            await writer.aclose()

    lost, answered = asyncio.run(scenario())
    assert answered == lost
    notifications = lost_commits.recorder.select_notifications(start=1, limit=100)
    assert len(notifications) == 5  # w, c's, w2, a, b


def test_the_recorder_answers_a_batch_its_lost_connection_had_stored(
    runtime: Runtime, pg_url: str
) -> None:
    """The same on the synchronous insert (`crm demo`, the benchmarks' seeding). Its
    `@retry` hides whether an attempt came before, so any conflict looks for the very
    batch: found byte for byte, its positions are the answer; another event at the same
    version still conflicts."""
    lost_commits = LostCommits(runtime, pg_url)
    registered, committed_elsewhere = lost_commits.registered, lost_commits.committed_elsewhere
    recorder = lost_commits.recorder
    c = uuid.uuid4()
    batch = [registered("a", uuid.uuid4()), registered("b", uuid.uuid4())]
    mine, rival = registered("c", c), registered("another c", c)

    committed_elsewhere([rival])
    with pytest.raises(IntegrityError):
        recorder.insert_events([mine])
    lost = committed_elsewhere(batch)
    assert recorder.insert_events(batch) == lost
    assert len(recorder.select_notifications(start=1, limit=100)) == 3  # c's, a, b
