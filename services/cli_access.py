"""`crm access rules`: the access model's role x action table, as the README shows it.

The table is generated from `services.access.rules.RULES`, never written by hand; a unit test
checks the README holds exactly this output.
"""

from __future__ import annotations

import argparse
from typing import Any

from services.access.rules import rules_markdown
from services.settings import Settings


def register(commands: argparse._SubParsersAction[Any]) -> None:
    """Add this module's subcommands to `crm`."""
    access = commands.add_parser("access", help="the access model: who may do what")
    actions = access.add_subparsers(dest="action", required=True, metavar="ACTION")
    rules = actions.add_parser("rules", help="the role x action table (Markdown)")
    rules.set_defaults(handler=_rules)


def _rules(args: argparse.Namespace, settings: Settings) -> int:
    print(rules_markdown(), end="")
    return 0
