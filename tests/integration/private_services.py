"""A private PostgreSQL and Kafka for fault tests, which stop, restart and kill them.

The shared services (`make services-up`) serve every other test, and other people's
tests, at the same time: a fault test must never touch them. `PrivateServices` starts
its own PostgreSQL cluster and Kafka broker with `scripts/services.sh`, in a temporary
`CRM_SERVICES_DIR`, on free ports below the ephemeral range, and removes them at the
end; the scripts stop what they started by its recorded pid, never by name. The broker
jars come from `CRM_KAFKA_HOME` (default: the project's cache, filled by `make test`).
"""

from __future__ import annotations

import os
import random
import shlex
import socket
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from bench.databases import fresh_database
from tests.integration.kafka_proxy import KafkaProxy

ROOT = Path(__file__).resolve().parents[2]
SCRIPTS = ROOT / "scripts"
PORTS = range(20000, 32000)
"""Below Linux's ephemeral range (32768-60999), so no outgoing connection holds one."""


def free_port(taken: set[int]) -> int:
    """A port of `PORTS` nobody listens on or holds now (and not in `taken`)."""
    while True:
        port = random.choice(PORTS)
        if port in taken:
            continue
        with socket.socket() as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                probe.bind(("127.0.0.1", port))
            except OSError:
                continue
        taken.add(port)
        return port


class PrivateServices:
    """Our own PostgreSQL and Kafka broker; `start()`, faults, then `remove()`."""

    def __init__(self, directory: Path) -> None:
        taken: set[int] = set()
        self.pg_port, self.kafka_port = free_port(taken), free_port(taken)
        proxied, proxy = free_port(taken), free_port(taken)
        self.env = {
            **{k: v for k, v in os.environ.items() if k not in _SHARED},
            "CRM_SERVICES_DIR": str(directory),
            "CRM_PG_PORT": str(self.pg_port),
            "CRM_KAFKA_PORT": str(self.kafka_port),
            "CRM_KAFKA_CONTROLLER_PORT": str(free_port(taken)),
            "CRM_KAFKA_PROXIED_LISTENER": f"{proxied}:{proxy}",
        }
        self.directory = directory
        self.database_url = f"postgresql://crm:crm@127.0.0.1:{self.pg_port}/crm"
        self.bootstrap = f"127.0.0.1:{self.kafka_port}"
        self.proxy = KafkaProxy(proxy, proxied)
        self.proxied_bootstrap = f"127.0.0.1:{proxy}"
        """The broker reached through `proxy`, which can cut a client off its coordinator."""

    def start(self) -> None:
        self._script("services.sh", "up")
        exported = self._exported()
        assert exported["CRM_DATABASE_URL"] == self.database_url, exported
        assert exported["CRM_KAFKA_BOOTSTRAP"] == self.bootstrap, exported

    def stop_postgres(self) -> None:
        """A clean stop (`pg_ctl stop -m fast`): every connection is closed."""
        self._script("postgres.sh", "down")

    def start_postgres(self) -> None:
        self._script("postgres.sh", "up")

    def stop_broker(self, *, kill: bool = False) -> None:
        """Stop the broker, keeping its data (SIGTERM, or SIGKILL with `kill`)."""
        self._script("kafka.sh", "stop-broker", *(["--kill"] if kill else []))

    def start_broker(self) -> None:
        """Start the stopped broker again on the same ports and data; wait until ready."""
        self._script("kafka.sh", "start-broker")

    def remove(self) -> None:
        """Stop both (by recorded pid) and delete the PostgreSQL cluster."""
        self.proxy.close()
        self._script("kafka.sh", "down", check=False)
        self._script("postgres.sh", "destroy", check=False)

    @contextmanager
    def database(self) -> Iterator[str]:
        """A fresh database on the private server, dropped afterwards."""
        with fresh_database(self.database_url, prefix="crm_fault") as url:
            yield url

    def _script(self, name: str, *args: str, check: bool = True) -> None:
        done = subprocess.run(
            [str(SCRIPTS / name), *args], env=self.env, capture_output=True, text=True,
            timeout=300, check=False,
        )  # fmt: skip
        if check and done.returncode != 0:
            command = shlex.join([name, *args])
            raise AssertionError(f"{command} failed ({done.returncode}):\n{done.stderr[-3000:]}")

    def _exported(self) -> dict[str, str]:
        lines = (self.directory / "env").read_text().splitlines()
        pairs = (line.removeprefix("export ").split("=", 1) for line in lines if "=" in line)
        return {name: shlex.split(value)[0] for name, value in pairs}


_SHARED = ("CRM_DATABASE_URL", "CRM_KAFKA_BOOTSTRAP")
"""Unset for the scripts: set, they would reuse the shared services instead of starting."""
