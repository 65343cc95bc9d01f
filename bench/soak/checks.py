"""The questions the soak and the fault tests ask after (or while) faults are injected.

Has every acknowledged command been stored? Has the relay published, and has each
projection applied, every event up to a position? Is every stored event on Kafka?
Each answer is read from PostgreSQL and Kafka as they are, never from a process's word.
"Applied up to N" is the API's read-your-writes test (`services.api.read_positions`):
no stored event up to N has a version above its aggregate's applied version.

I/O: PostgreSQL (event store, relay position, read-model bookkeeping), Kafka (topics).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from uuid import UUID

import psycopg
from psycopg import sql

from bench.soak.load import Ack
from consumers.envelope import all_topics, read_cloudevent
from consumers.kafka_io import read_all
from services.audit_kafka import Placement


def missing_acks(url: str, acks: list[Ack]) -> list[Ack]:
    """The acknowledged commands whose event (aggregate, version) is not stored."""
    with psycopg.connect(url) as conn:
        rows = conn.execute(
            "SELECT a.id, a.v FROM unnest(%s::uuid[], %s::int[]) AS a(id, v)"
            " WHERE NOT EXISTS (SELECT 1 FROM crm_events e"
            " WHERE e.originator_id = a.id AND e.originator_version = a.v)",
            ([UUID(a.aggregate_id) for a in acks], [a.version for a in acks]),
        ).fetchall()
    missing = {(str(r[0]), r[1]) for r in rows}
    return [a for a in acks if (a.aggregate_id, a.version) in missing]


def head(url: str) -> int:
    """The newest stored event's position (0 when none)."""
    with psycopg.connect(url) as conn:
        row = conn.execute("SELECT coalesce(max(notification_id), 0) FROM crm_events").fetchone()
    return int(row[0]) if row else 0


def relay_reached(url: str, position: int | None = None) -> bool:
    """The relay's stored position is at `position` (default: the head) or beyond."""
    with psycopg.connect(url) as conn:
        try:
            row = conn.execute("SELECT position FROM crm_relay_position").fetchone()
        except psycopg.errors.UndefinedTable:
            return False
    return row is not None and row[0] >= (head(url) if position is None else position)


def projection_reached(url: str, name: str, position: int | None = None) -> bool:
    """The live generation of `name` applied every event up to `position` (default all)."""
    with psycopg.connect(url) as conn:
        try:
            row = conn.execute(
                "SELECT live_generation FROM crm_projections WHERE name = %s", (name,)
            ).fetchone()
        except psycopg.errors.UndefinedTable:
            return False
        if row is None or row[0] is None:
            return False
        behind = conn.execute(
            sql.SQL(
                "SELECT 1 FROM crm_events e LEFT JOIN {} a ON a.aggregate_id = e.originator_id"
                " WHERE e.notification_id <= %s"
                " AND (a.version IS NULL OR a.version < e.originator_version) LIMIT 1"
            ).format(sql.Identifier(f"{name}_v{row[0]}", "_applied")),
            (position if position is not None else 2**62,),
        ).fetchone()
    return behind is None


def rejected(url: str, name: str) -> int:
    """Records the live generation of `name` rejected (`consumers.projecting`): under
    the soak's faults, with no forger about, a genuine record rejected would be lost."""
    with psycopg.connect(url) as conn:
        row = conn.execute(
            "SELECT live_generation FROM crm_projections WHERE name = %s", (name,)
        ).fetchone()
        if row is None or row[0] is None:
            return 0
        status = sql.Identifier(f"{name}_v{row[0]}", "_status")
        count = conn.execute(sql.SQL("SELECT rejected FROM {}").format(status)).fetchone()
    return 0 if count is None else int(count[0])


def health(url: str, process: str) -> tuple[list[str], int, int]:
    """(dependencies down, watchdog restarts, writer restarts) of `process`; nothing
    down and no restarts before the process has written its row."""
    with psycopg.connect(url) as conn:
        row = conn.execute(
            "SELECT down, watchdog_restarts, writer_restarts FROM crm_process_health"
            " WHERE process = %s",
            (process,),
        ).fetchone()
    return ([], 0, 0) if row is None else (list(row[0]), row[1], row[2])


@dataclass(frozen=True)
class Published:
    """Stored events against the records on the topics."""

    stored: int
    records: int
    lost: list[tuple[UUID, int]]
    duplicates: int
    out_of_place: list[str]
    """Records not where the relay puts them (`services.audit_kafka.Placement`): none may
    be, whatever faults the relay rode out, or the audit and the consumers would be
    wrong to refuse such records."""


def published(url: str, bootstrap: str, prefix: str) -> Published:
    """Every stored event looked up on Kafka by (aggregate, version), and where it sits."""
    with psycopg.connect(url) as conn:
        stored = set(conn.execute("SELECT originator_id, originator_version FROM crm_events"))
    seen: Counter[tuple[UUID, int]] = Counter()
    placement, out_of_place = Placement(), []
    for record in read_all(bootstrap, all_topics(prefix)):
        attributes = read_cloudevent(record.value)
        subject, version = attributes.subject, attributes.aggregateversion
        seen[(UUID(subject), version)] += 1
        if (why := placement.check(record.topic, record.partition, subject, version)) is not None:
            out_of_place.append(f"{record.topic}[{record.partition}]@{record.offset} {why}")
    lost = sorted(stored - set(seen))
    duplicates = sum(seen.values()) - len(seen)
    return Published(len(stored), sum(seen.values()), lost, duplicates, out_of_place)
