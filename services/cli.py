"""`crm`: the one command-line entry point. Every subcommand has `--help`.

Subcommands live in the `services/cli_*.py` modules, each registering its own;
this module parses, sets up logging and turns `ConfigError`s into one line.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence

from services import (
    cli_access,
    cli_analysts,
    cli_api,
    cli_audit,
    cli_bench,
    cli_contract,
    cli_projections,
    cli_relay,
)
from services.logs import configure_logging
from services.settings import ConfigError, Settings, load_settings

Handler = Callable[[argparse.Namespace, Settings], int | None]

COMMAND_MODULES = (
    cli_api,
    cli_audit,
    cli_relay,
    cli_projections,
    cli_contract,
    cli_bench,
    cli_access,
    cli_analysts,
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="crm",
        description="CRM Collab: event-sourced customer communication collaboration.",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for module in COMMAND_MODULES:
        module.register(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    handler: Handler = args.handler
    try:
        settings = load_settings()
        configure_logging(settings)
        return handler(args, settings) or 0
    except ConfigError as error:
        print(f"crm: configuration error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
