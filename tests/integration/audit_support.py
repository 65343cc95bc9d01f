"""Shared pieces of the integrity tests: a chained store on either backend, and the
tampering an intruder with write access to its tables would do (raw SQL, behind the
application's back)."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from contextlib import closing, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast
from uuid import UUID, uuid4

import psycopg
from eventsourcing.persistence import StoredEvent

from consumers.key_stores import PostgresKeyStore, SqliteKeyStore
from consumers.keyring import Keyring
from domain.base import Aggregate
from domain.checkpoint import Checkpoint
from domain.codec import CodecMapper
from domain.conversation import Conversation
from domain.customer import Customer
from domain.snapshot import TAGS, snapshot
from services.audit_keys import SigningKey, load_or_create
from services.audit_log import AuditLog, open_audit_log
from services.audit_verify import Comparison, Report, verify_log
from services.bootstrap import connect_pool
from services.checkpointer import Checkpointer
from services.event_store import CrmApplication, open_event_store
from tests.unit.domain.factories import ctx

ROOT = Path(__file__).resolve().parents[2]
CRM = [sys.executable, "-m", "services.cli"]


@dataclass
class Audited:
    """A chained event store on one backend, with its signing key and raw access."""

    backend: str
    app: CrmApplication
    env: dict[str, str]
    key: SigningKey
    log: AuditLog
    closers: list[Any] = field(default_factory=list)

    @property
    def events(self) -> str:
        return "crm_events" if self.backend == "postgres" else "stored_events"

    @property
    def chain(self) -> str:
        return f"{self.events}_chain"

    @property
    def position(self) -> str:
        return "notification_id" if self.backend == "postgres" else "rowid"

    def sign(self) -> Checkpoint:
        checkpoint = Checkpointer(self.log, self.key, every_events=1, every_seconds=1).checkpoint()
        assert checkpoint is not None
        return checkpoint

    def verify(self, comparisons: tuple[Comparison, ...] = (), **kwargs: Any) -> Report:
        return verify_log(
            self.log, self.log.checkpoints(), self.key.public_key,
            comparisons=comparisons, **kwargs,
        )  # fmt: skip

    def sql(self, statement: str, *params: Any) -> list[Any]:
        """Run SQL on the store's database directly (`?` placeholders on both)."""
        if self.backend == "postgres":
            with psycopg.connect(self.env["CRM_DATABASE_URL"], autocommit=True) as conn:
                cursor = conn.execute(statement.replace("?", "%s").encode(), params)
                return cursor.fetchall() if cursor.description else []
        path = Path(self.env["CRM_DATA_DIR"]) / "events.db"
        with closing(sqlite3.connect(path, isolation_level=None)) as conn:
            return conn.execute(statement, params).fetchall()

    def full_env(self, extra: dict[str, str] | None = None) -> dict[str, str]:
        return {**os.environ, **self.env, **(extra or {})}

    def crm(self, *args: str) -> subprocess.CompletedProcess[str]:
        return self.crm_with({}, *args)

    def crm_with(self, extra: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
        """`crm ARGS` on this store, in a process of its own."""
        return subprocess.run(
            [*CRM, *args], cwd=ROOT, env=self.full_env(extra), capture_output=True, text=True,
            timeout=120, check=False,
        )  # fmt: skip


@contextmanager
def audited(backend: str, tmp_path: Path, pg_url: str | None) -> Iterator[Audited]:
    key_file = tmp_path / "audit.key"
    closers: list[Any] = []
    env = {"CRM_AUDIT_KEY_FILE": str(key_file), "CRM_DATA_DIR": str(tmp_path)}
    if backend == "sqlite":
        app = open_event_store(None, tmp_path, Keyring(SqliteKeyStore(tmp_path / "keys.db")))
        env["CRM_DATABASE_URL"] = ""
    else:
        assert pg_url is not None
        pool = connect_pool(pg_url)
        closers.append(pool)
        app = open_event_store(pg_url, None, Keyring(PostgresKeyStore(pool)))
        env["CRM_DATABASE_URL"] = pg_url
    log = open_audit_log(app)
    try:
        yield Audited(backend, app, env, load_or_create(key_file), log, closers)
    finally:
        log.close()
        app.close()
        for closer in closers:
            closer.close()


def fill(app: CrmApplication, customers: int = 6) -> list[Customer]:
    """Customers with personal data, several saved per transaction, then changes and a
    conversation: a log of about 4 events per customer."""
    registered = [
        Customer.register(
            ctx(minutes=i), customer_id=uuid4(), name=f"Customer {i}",
            email=f"c{i}@example.com", owner_department="sales",
        )
        for i in range(customers)
    ]  # fmt: skip
    app.record(*registered[: customers // 2])
    app.record(*registered[customers // 2 :])
    for customer in registered:
        customer.tag(ctx(minutes=20), "gold")
        customer.update_profile(ctx(minutes=21), company="Acme")
    app.record(*registered)
    talk = Conversation.open(
        ctx(minutes=30), conversation_id=uuid4(), customer=registered[0], channel="chat",
        subject="Hi",
    )  # fmt: skip
    talk.log_message(
        ctx(minutes=31), message_id="m1", direction="inbound", author="Ann", content="call me"
    )
    app.record(talk)
    return registered


def positions(store: Audited) -> list[int]:
    return [row[0] for row in store.sql(f"SELECT {store.position} FROM {store.events} ORDER BY 1")]


def flip_byte(store: Audited, position: int) -> None:
    (state,) = store.sql(f"SELECT state FROM {store.events} WHERE {store.position} = ?", position)[
        0
    ]
    changed = bytearray(state)
    changed[len(changed) // 2] ^= 0x01
    store.sql(
        f"UPDATE {store.events} SET state = ? WHERE {store.position} = ?", bytes(changed), position
    )


def delete_event(store: Audited, position: int, *, with_link: bool = False) -> None:
    store.sql(f"DELETE FROM {store.events} WHERE {store.position} = ?", position)
    if with_link:
        store.sql(f"DELETE FROM {store.chain} WHERE position = ?", position)


def swap(store: Audited, first: int, second: int) -> None:
    """Exchange the positions of two events (three steps: positions are unique)."""
    update = f"UPDATE {store.events} SET {store.position} = ? WHERE {store.position} = ?"
    store.sql(update, -1, first)
    store.sql(update, first, second)
    store.sql(update, second, -1)


def forge(store: Audited, like: int) -> int:
    """Append a copy of the event at `like` as a new aggregate's first event; its position."""
    topic, state = store.sql(
        f"SELECT topic, state FROM {store.events} WHERE {store.position} = ?", like
    )[0]
    aggregate: Any = uuid4() if store.backend == "postgres" else uuid4().hex
    store.sql(
        f"INSERT INTO {store.events} (originator_id, originator_version, topic, state)"
        " VALUES (?, 1, ?, ?)", aggregate, topic, state,
    )  # fmt: skip
    return int(store.sql(f"SELECT max({store.position}) FROM {store.events}")[0][0])


def truncate(store: Audited, keep: int) -> None:
    """Delete every event after position `keep`, and its link: a tidy intruder."""
    store.sql(f"DELETE FROM {store.events} WHERE {store.position} > ?", keep)
    store.sql(f"DELETE FROM {store.chain} WHERE position > ?", keep)


def hide(store: Audited, customer: UUID, position: int) -> None:
    """Store, behind the application's back, the customer's next events (another owner
    department, a share with support) at `position` and below: where no walk reads."""
    changed = store.app.load(Customer, customer)
    changed.change_owner(ctx(actor="intruder", minutes=90), department="marketing")
    changed.share_with(ctx(actor="intruder", minutes=91), "support")
    for event in changed.collect_events():
        _, stored = cast(CodecMapper, store.app.mapper).sealed_and_stored(event)
        aggregate: Any = stored.originator_id if store.backend == "postgres" else customer.hex
        store.sql(
            f"INSERT INTO {store.events} ({store.position}, originator_id, originator_version,"
            " topic, state) VALUES (?, ?, ?, ?, ?)",
            position, aggregate, stored.originator_version, stored.topic, stored.state,
        )  # fmt: skip
        position -= 1


def put_snapshot(store: Audited, aggregate: Aggregate, version: int | None = None) -> None:
    """Store a snapshot of `aggregate` (as loaded sealed) as the API's reads do, at its
    version or at `version`: genuine, or forged if `aggregate` was changed first."""
    at = aggregate.version if version is None else version
    stored = StoredEvent(aggregate.id, at, TAGS[type(aggregate)], snapshot(aggregate))
    store.app.snapshot_recorder.insert_events([stored])
