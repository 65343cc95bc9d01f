"""compose.yaml cannot be run here (no Docker), so check what can be checked:
every service it depends on exists, every project process runs a real `crm`
subcommand with valid arguments, and there is one consumer per projection."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from projections import PROJECTIONS
from services.cli import build_parser

COMPOSE = Path(__file__).parents[3] / "compose.yaml"


@pytest.fixture(scope="module")
def services() -> dict[str, Any]:
    document = yaml.safe_load(COMPOSE.read_text())
    result: dict[str, Any] = document["services"]
    return result


def test_dependencies_name_existing_services(services: dict[str, Any]) -> None:
    for name, service in services.items():
        for dependency in service.get("depends_on", {}):
            assert dependency in services, f"{name} depends on unknown service {dependency}"


def test_every_command_is_a_real_crm_subcommand(services: dict[str, Any]) -> None:
    parser = build_parser()
    commands = [s["command"] for s in services.values() if "command" in s]
    assert commands, "compose.yaml runs no project process"
    for command in commands:
        assert command[0] == "crm", command
        args = parser.parse_args(command[1:])  # exits (SystemExit) on an unknown command
        assert callable(args.handler), command


def test_one_consumer_per_projection(services: dict[str, Any]) -> None:
    consumed = {
        s["command"][2] for s in services.values() if s.get("command", [None, None])[1] == "consume"
    }
    assert consumed == set(PROJECTIONS)


def test_processes_share_the_crm_settings(services: dict[str, Any]) -> None:
    for name in ("api", "relay"):
        environment = services[name]["environment"]
        assert {"CRM_DATABASE_URL", "CRM_KAFKA_BOOTSTRAP"} <= set(environment), name
