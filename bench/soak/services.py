"""Stopping and starting a PostgreSQL and Kafka of one's own, through the project's scripts.

For the soak and the fault tests, which restart them on purpose: never the shared
services. The scripts run with the caller's `CRM_SERVICES_DIR` and ports, and without
`CRM_DATABASE_URL` / `CRM_KAFKA_BOOTSTRAP` (set, `up` would reuse those instead of
starting its own); they stop what they started by its recorded pid, never by name.
"""

from __future__ import annotations

import os
import shlex
import subprocess
from collections.abc import Mapping
from pathlib import Path

SCRIPTS = Path(__file__).resolve().parents[2] / "scripts"
_REUSED = ("CRM_DATABASE_URL", "CRM_KAFKA_BOOTSTRAP")


class ServiceScripts:
    """`scripts/{services,postgres,kafka}.sh` with one environment."""

    def __init__(self, env: Mapping[str, str] | None = None) -> None:
        source = os.environ if env is None else env
        self.env = {k: v for k, v in source.items() if k not in _REUSED}
        self.directory = Path(self.env["CRM_SERVICES_DIR"])

    def up(self) -> dict[str, str]:
        """Start both; the variables they wrote to `$CRM_SERVICES_DIR/env`."""
        self.run("services.sh", "up")
        lines = (self.directory / "env").read_text().splitlines()
        pairs = (line.removeprefix("export ").split("=", 1) for line in lines if "=" in line)
        return {name: shlex.split(value)[0] for name, value in pairs}

    def stop_postgres(self) -> None:
        """A clean stop (`pg_ctl stop -m fast`): the server closes every connection."""
        self.run("postgres.sh", "down")

    def start_postgres(self) -> None:
        self.run("postgres.sh", "up")

    def stop_broker(self, *, kill: bool = False) -> None:
        """Stop the broker, keeping its data (SIGTERM, or SIGKILL with `kill`)."""
        self.run("kafka.sh", "stop-broker", *(["--kill"] if kill else []))

    def start_broker(self) -> None:
        """Start the stopped broker again, same ports and data; wait until it is ready."""
        self.run("kafka.sh", "start-broker")

    def remove(self) -> None:
        """Stop both (by recorded pid) and delete the PostgreSQL cluster."""
        self.run("kafka.sh", "down", check=False)
        self.run("postgres.sh", "destroy", check=False)

    def run(self, script: str, *args: str, check: bool = True) -> None:
        done = subprocess.run(  # noqa: S603 - the project's own scripts, fixed arguments
            [str(SCRIPTS / script), *args], env=self.env, capture_output=True, text=True,
            timeout=300, check=False,
        )  # fmt: skip
        if check and done.returncode != 0:
            command = shlex.join([script, *args])
            raise RuntimeError(f"{command} failed ({done.returncode}):\n{done.stderr[-3000:]}")
