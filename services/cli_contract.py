"""`crm contract generate`: write the event contract (JSON Schemas, AsyncAPI) to docs/events."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from services.settings import Settings


def register(commands: argparse._SubParsersAction[Any]) -> None:
    contract = commands.add_parser("contract", help="the published event contract")
    actions = contract.add_subparsers(dest="action", required=True, metavar="ACTION")
    generate = actions.add_parser(
        "generate", help="regenerate docs/events from the event classes (commit the result)"
    )
    generate.add_argument("--output", type=Path, default=Path("docs/events"))
    generate.set_defaults(handler=_generate)


def _generate(args: argparse.Namespace, settings: Settings) -> int:
    from domain.contract import generate

    for path in generate(args.output):
        print(path)
    return 0
