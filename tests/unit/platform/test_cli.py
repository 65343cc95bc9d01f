"""The `crm` command line: every subcommand documents itself, and bad configuration
ends in one line naming the setting (exit 2), never a traceback."""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

import pytest

from services.cli import build_parser

CRM = str(Path(sys.executable).with_name("crm"))


def _subparsers(parser: argparse.ArgumentParser, path: str = "crm") -> list[tuple[str, str]]:
    found: list[tuple[str, str]] = []
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            helps = {choice.dest: choice.help for choice in action._choices_actions}
            for name, sub in action.choices.items():
                found.append((f"{path} {name}", helps.get(name) or ""))
                found += _subparsers(sub, f"{path} {name}")
    return found


def test_every_subcommand_has_help() -> None:
    commands = _subparsers(build_parser())
    assert {"crm run", "crm api", "crm relay", "crm consume", "crm bench"} <= {
        c for c, _ in commands
    }
    undocumented = [command for command, text in commands if not text]
    assert not undocumented


def _crm(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [CRM, *args],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.mark.parametrize(
    ("env", "setting"),
    [
        ({"CRM_DATABASE_URL": "postgresql://crm:crm@127.0.0.1:1/crm"}, "CRM_DATABASE_URL"),
        ({"CRM_DATABASE_URL": "mysql://elsewhere"}, "CRM_DATABASE_URL"),
        ({"CRM_DATABASE_URL": "", "CRM_DATA_DIR": "/proc/no-such-dir"}, "CRM_DATA_DIR"),
        ({"CRM_KAFKA_BOOTSTRAP": "no-port"}, "CRM_KAFKA_BOOTSTRAP"),
    ],
)
def test_bad_configuration_is_one_line_naming_the_setting(
    env: dict[str, str], setting: str
) -> None:
    done = _crm("principals", "list", **env)
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith(f"crm: configuration error: {setting}: ")
    assert "Traceback" not in done.stderr


@pytest.mark.parametrize("command", [("consume", "sales"), ("projections", "verify", "sales")])
def test_reading_kafka_needs_the_postgresql_event_store_to_check_records_against(
    command: tuple[str, ...], tmp_path: Path
) -> None:
    """The embedded default has no relay: nothing on Kafka is its events (it waited for
    a broker, then applied whatever the topics held)."""
    env = {"CRM_DATABASE_URL": "", "CRM_DATA_DIR": str(tmp_path)}
    done = _crm(*command, **env, CRM_KAFKA_BOOTSTRAP="127.0.0.1:1")
    assert done.returncode == 2
    assert done.stderr == (
        f"crm: configuration error: CRM_DATABASE_URL: required: crm {' '.join(command[:-1])}"
        " checks each Kafka record against the PostgreSQL event store (the embedded"
        " default's projections follow their own store, no Kafka)\n"
    )
