"""A private PostgreSQL and Kafka for fault tests, which stop, restart and kill them.

The shared services (`make services-up`) serve every other test, and other people's
tests, at the same time: a fault test must never touch them. `PrivateServices` starts
its own PostgreSQL cluster and Kafka broker with the project's scripts
(`bench.soak.services`), in a temporary `CRM_SERVICES_DIR`, on free ports below the
ephemeral range, and removes them at the end. The broker jars come from
`CRM_KAFKA_HOME` (default: the project's cache, which `make test` fills). A second
broker listener sits behind a test proxy (`tests.integration.kafka_proxy`).
"""

from __future__ import annotations

import os
import random
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from bench.databases import fresh_database
from bench.soak.services import ServiceScripts
from tests.integration.kafka_proxy import KafkaProxy

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


class PrivateServices(ServiceScripts):
    """Our own PostgreSQL and Kafka broker; `start()`, faults, then `remove()`."""

    def __init__(self, directory: Path) -> None:
        taken: set[int] = set()
        pg_port, kafka_port = free_port(taken), free_port(taken)
        proxied, proxy = free_port(taken), free_port(taken)
        super().__init__(
            os.environ
            | {
                "CRM_SERVICES_DIR": str(directory),
                "CRM_PG_PORT": str(pg_port),
                "CRM_KAFKA_PORT": str(kafka_port),
                "CRM_KAFKA_CONTROLLER_PORT": str(free_port(taken)),
                "CRM_KAFKA_PROXIED_LISTENER": f"{proxied}:{proxy}",
            }
        )
        self.database_url = f"postgresql://crm:crm@127.0.0.1:{pg_port}/crm"
        self.bootstrap = f"127.0.0.1:{kafka_port}"
        self.proxy = KafkaProxy(proxy, proxied)
        self.proxied_bootstrap = f"127.0.0.1:{proxy}"
        """The broker reached through `proxy`, which can cut a client off its coordinator."""

    def start(self) -> None:
        exported = self.up()
        assert exported["CRM_DATABASE_URL"] == self.database_url, exported
        assert exported["CRM_KAFKA_BOOTSTRAP"] == self.bootstrap, exported

    def remove(self) -> None:
        self.proxy.close()
        super().remove()

    @contextmanager
    def database(self) -> Iterator[str]:
        """A fresh database on the private server, dropped afterwards."""
        with fresh_database(self.database_url, prefix="crm_fault") as url:
            yield url
