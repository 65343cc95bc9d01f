"""CPU time of processes from /proc (the benchmarks run beside what they measure)."""

from __future__ import annotations

import os
from pathlib import Path

import psycopg

TICKS = os.sysconf("SC_CLK_TCK")


def proc_cpu(pid: int) -> float:
    """User + system CPU seconds of one process so far (0 once it is gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / TICKS  # utime, stime


def database_cpu(database_url: str) -> float:
    """User + system CPU seconds so far of the PostgreSQL backends connected to one
    database, when PostgreSQL runs on this machine (0 when it runs elsewhere). A backend
    that ends between two samples takes its CPU with it: pools keep theirs."""
    query = (
        "SELECT pid FROM pg_stat_activity"
        " WHERE datname = current_database() AND pid <> pg_backend_pid()"
    )
    with psycopg.connect(database_url, autocommit=True) as conn:
        pids = [row[0] for row in conn.execute(query)]
    return sum(proc_cpu(pid) for pid in pids if _command(pid) == "postgres")


def _command(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return ""


def process_tree(pid: int) -> list[int]:
    """`pid` and every process below it (worker processes of a server)."""
    pids, pending = [], [pid]
    while pending:
        current = pending.pop()
        pids.append(current)
        for task in Path(f"/proc/{current}/task").glob("*/children"):
            try:
                pending += [int(child) for child in task.read_text().split()]
            except OSError:
                continue
    return pids
