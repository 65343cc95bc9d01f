"""Run `crm` subcommands as real processes for end-to-end tests.

Each process gets the test's environment (database, broker, topic prefix, data dir),
writes its output to a file, and is stopped (SIGTERM, then SIGKILL) when the test
ends; a failing test shows the tail of every process's output.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TypeVar

import httpx

CRM = str(Path(sys.executable).with_name("crm"))
T = TypeVar("T")


def pipeline_env(database_url: str, bootstrap: str, prefix: str, tmp: Path) -> dict[str, str]:
    """The variables of a test's `crm` processes on PostgreSQL + Kafka."""
    return {
        "CRM_DATABASE_URL": database_url,
        "CRM_KAFKA_BOOTSTRAP": bootstrap,
        "CRM_TOPIC_PREFIX": prefix,
        "CRM_DATA_DIR": str(tmp / "data"),
    }


def server_env(command: str, database_url: str, data: Path) -> dict[str, str]:
    """The environment of `crm api` (on `database_url`) or `crm run` (embedded, in `data`)."""
    return {"CRM_DATABASE_URL": database_url if command == "api" else "", "CRM_DATA_DIR": str(data)}


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


class Processes:
    """The `crm` processes of one test, sharing one environment."""

    def __init__(self, env: dict[str, str], logs: Path) -> None:
        self.env = {**os.environ, **env, "CRM_LOG_FORMAT": "json"}
        self.logs = logs
        self.running: list[tuple[str, subprocess.Popen[bytes], Path]] = []

    def start(self, *args: str, env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
        """Start `crm ARGS...` (`env`: variables to set for this process only)."""
        log = self.logs / f"{'-'.join(args)}.log"
        with log.open("wb") as out:
            process = subprocess.Popen(
                [CRM, *args], env={**self.env, **(env or {})}, stdout=out, stderr=out
            )
        self.running.append((" ".join(args), process, log))
        return process

    def serve(self, command: str, port: int) -> subprocess.Popen[bytes]:
        """Start `crm run` or `crm api` on 127.0.0.1:`port`, once it answers HTTP."""
        process = self.start(command, "--host", "127.0.0.1", "--port", str(port))
        wait_for_http(f"http://127.0.0.1:{port}", process)
        return process

    def run(self, *args: str) -> str:
        """Run a short command to completion; its stdout (fails the test on error)."""
        done = subprocess.run(
            [CRM, *args], env=self.env, capture_output=True, text=True, timeout=120, check=False
        )
        assert done.returncode == 0, f"crm {' '.join(args)}: {done.stderr}"
        return done.stdout

    def output(self, process: subprocess.Popen[bytes]) -> str:
        return self.log(process).read_text()

    def log(self, process: subprocess.Popen[bytes]) -> Path:
        return next(log for _, p, log in self.running if p is process)

    def stop_all(self) -> None:
        for _, process, _ in self.running:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for _, process, _ in self.running:
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()

    def report(self) -> str:
        return "\n".join(
            f"--- crm {name} (exit {process.poll()}) ---\n{log.read_text()[-3000:]}"
            for name, process, log in self.running
        )


@contextmanager
def crm_processes(env: dict[str, str], logs: Path) -> Iterator[Processes]:
    processes = Processes(env, logs)
    try:
        yield processes
    except BaseException:
        print(processes.report())
        raise
    finally:
        processes.stop_all()


def eventually(probe: Callable[[], T | None], *, within: float = 60.0, what: str = "") -> T:
    """Poll `probe` until it returns something (neither None nor False); fail after
    `within` seconds. A bound on waiting for an asynchronous pipeline, not a
    performance assertion.
    """
    deadline = time.monotonic() + within
    while True:
        result = probe()
        if result is not None and result is not False:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"gave up waiting after {within:.0f} s for {what or probe}")
        time.sleep(0.1)


def wait_for_http(base_url: str, process: subprocess.Popen[bytes]) -> None:
    def ready() -> bool | None:
        assert process.poll() is None, "the API process exited"
        try:
            return httpx.get(f"{base_url}/healthz", timeout=1).status_code == 200 or None
        except httpx.TransportError:
            return None

    eventually(ready, within=60, what=f"{base_url}/healthz")
