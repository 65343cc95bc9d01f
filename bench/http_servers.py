"""The API under test as a real `crm api` / `crm run` process, and its CPU time.

The benchmark drives the server the way production runs it: its own process(es), the
`crm` entry point, logging at `warning` (no line per request). `--workers N` and
`--server` are passed through. CPU seconds are read from /proc for the whole process
tree (uvicorn's and granian's worker processes included): CPU per request is the figure
that stays meaningful when other work shares the machine.
I/O: starts and stops processes; HTTP on loopback.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import NamedTuple

from bench.proc import database_cpu, proc_cpu, process_tree

CRM = str(Path(sys.executable).with_name("crm"))
START_SECONDS = 90.0


class Served(NamedTuple):
    base_url: str
    pid: int
    log: Path
    database_url: str  # "" on the embedded default

    def cpu_seconds(self) -> float:
        """User + system CPU of the server and every process below it, so far."""
        return sum(proc_cpu(pid) for pid in process_tree(self.pid))

    def database_cpu_seconds(self) -> float:
        """CPU of the PostgreSQL backends of the server's database so far (0 when
        PostgreSQL runs on another machine; only for a server on PostgreSQL)."""
        return database_cpu(self.database_url)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@contextmanager
def served(
    env: dict[str, str], logs: Path, *, embedded: bool, server: str, workers: int = 1
) -> Iterator[Served]:
    """`crm run` (embedded) or `crm api` on a free port until the block ends (SIGTERM)."""
    port = free_port()
    command = [CRM, "run" if embedded else "api", "--port", str(port), "--server", server]
    if not embedded:
        command += ["--workers", str(workers)]
    log = logs / f"{'run' if embedded else 'api'}-{server}-{workers}.log"
    environment = {**os.environ, **env, "CRM_LOG_LEVEL": "warning", "CRM_HTTP_SERVER": server}
    with log.open("wb") as out:
        # our own entry point with fixed arguments, no shell
        process = subprocess.Popen(command, env=environment, stdout=out, stderr=out)  # noqa: S603
    base = f"http://127.0.0.1:{port}"
    try:
        _wait_until_up(base, process, log)
        yield Served(base, process.pid, log, env.get("CRM_DATABASE_URL", ""))
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _wait_until_up(base: str, process: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + START_SECONDS
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the server exited {process.returncode}: {log.read_text()[-2000:]}")
        try:
            with urllib.request.urlopen(f"{base}/healthz", timeout=2) as answer:  # noqa: S310
                if answer.status == 200:
                    return
        except OSError:
            time.sleep(0.2)
    raise RuntimeError(f"the server did not answer within {START_SECONDS:.0f} s")
