"""What the fault tests ask of the databases and of the processes' logs.

Every question is asked after the fact, or polled with a generous deadline
(`tests.e2e.processes.eventually`): nothing here measures time.
"""

from __future__ import annotations

import json
from pathlib import Path
from uuid import UUID

import psycopg
from psycopg import sql

from bench.soak.load import Ack

EVENTS = "crm_events"


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


def stored_versions(url: str) -> dict[UUID, int]:
    """Each aggregate's newest stored version."""
    with psycopg.connect(url) as conn:
        rows = conn.execute(
            "SELECT originator_id, max(originator_version) FROM crm_events GROUP BY 1"
        ).fetchall()
    return {r[0]: r[1] for r in rows}


def relay_caught_up(url: str) -> bool | None:
    """True once the relay's stored position is the head of the log (None before)."""
    with psycopg.connect(url) as conn:
        head = conn.execute("SELECT max(notification_id) FROM crm_events").fetchone()
        row = conn.execute("SELECT position FROM crm_relay_position").fetchone()
    return True if head and row and head[0] is not None and row[0] >= head[0] else None


def projection_caught_up(url: str, name: str) -> bool | None:
    """True once every stored event is applied to the live generation of `name`: no
    event has a version above its aggregate's applied version (None before)."""
    with psycopg.connect(url) as conn:
        row = conn.execute(
            "SELECT live_generation FROM crm_projections WHERE name = %s", (name,)
        ).fetchone()
        if row is None or row[0] is None:
            return None
        applied = sql.Identifier(f"{name}_v{row[0]}", "_applied")
        behind = conn.execute(
            sql.SQL(
                "SELECT count(*) FROM crm_events e LEFT JOIN {} a"
                " ON a.aggregate_id = e.originator_id"
                " WHERE a.version IS NULL OR a.version < e.originator_version"
            ).format(applied)
        ).fetchone()
    return True if behind is not None and behind[0] == 0 else None


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


def log_events(log: Path, event: str) -> list[dict[str, object]]:
    """The JSON log lines of `log` whose `event` is `event`."""
    lines = []
    for line in log.read_text().splitlines():
        if line.startswith("{"):
            entry = json.loads(line)
            if entry.get("event") == event:
                lines.append(entry)
    return lines


def children(pid: int) -> list[int]:
    """The child processes of `pid` (a consumer's writer process)."""
    return [int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
