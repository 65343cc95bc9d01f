"""CPU time of processes from /proc (the benchmarks run beside what they measure), and
which CPUs they run on."""

from __future__ import annotations

import os
from collections.abc import Callable
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


def pin_apart(server_pid: int, database_url: str) -> Callable[[], None]:
    """As if the server ran on a machine of its own: every thread of `server_pid`'s
    processes on the first CPU this process may use; this process (and the load
    generator it starts) and, when it runs here, the PostgreSQL serving `database_url`
    (its postmaster and every backend: new ones inherit) on the others. Returns what
    puts everything back on all of them. Needs two CPUs; with one, it changes nothing."""
    cpus = sorted(os.sched_getaffinity(0))
    if len(cpus) < 2:
        return lambda: None
    server, others = {cpus[0]}, set(cpus[1:])
    database = _postmaster_tree(database_url)
    for pid in process_tree(server_pid):
        for task in Path(f"/proc/{pid}/task").iterdir():
            _set_affinity(int(task.name), server)
    for pid in [0, *database]:
        _set_affinity(pid, others)

    def restore() -> None:
        for pid in [0, *database, *process_tree(server_pid)]:
            _set_affinity(pid, set(cpus))

    return restore


def _postmaster_tree(database_url: str) -> list[int]:
    """The local PostgreSQL's processes (none when it runs elsewhere)."""
    with psycopg.connect(database_url, autocommit=True) as conn:
        row = conn.execute("SELECT pg_backend_pid()").fetchone()
        status = Path(f"/proc/{row[0] if row else 0}/status")  # read while it runs
        lines = status.read_text().splitlines() if status.exists() else []
    parent = next((int(line.split()[1]) for line in lines if line.startswith("PPid:")), 0)
    return process_tree(parent) if parent and _command(parent) == "postgres" else []


def _set_affinity(pid: int, cpus: set[int]) -> None:
    try:
        os.sched_setaffinity(pid, cpus)
    except OSError:  # gone meanwhile
        return
