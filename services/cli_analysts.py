"""`crm analysts grant NAME` / `crm analysts revoke NAME`: read-only PostgreSQL logins
for analysts, who may read the read models' stable views and nothing else
(`consumers.analysts`). Needs PostgreSQL (`CRM_DATABASE_URL`) and a role allowed to
create roles (CREATEROLE). `grant` prints the new password once; granting an existing
analyst again gives it a new password."""

from __future__ import annotations

import argparse
import secrets
import sys
from typing import Any
from urllib.parse import parse_qsl, quote, urlencode, urlsplit, urlunsplit

from services.settings import ConfigError, Settings


def register(commands: argparse._SubParsersAction[Any]) -> None:
    """Add this module's subcommands to `crm`."""
    analysts = commands.add_parser("analysts", help="read-only SQL logins on the read models")
    actions = analysts.add_subparsers(dest="action", required=True, metavar="ACTION")
    grant = actions.add_parser("grant", help="create an analyst login; prints its password once")
    grant.add_argument("name")
    grant.set_defaults(handler=_grant)
    revoke = actions.add_parser("revoke", help="drop an analyst login")
    revoke.add_argument("name")
    revoke.set_defaults(handler=_revoke)


def _grant(args: argparse.Namespace, settings: Settings) -> int:
    from psycopg.errors import InsufficientPrivilege

    from consumers.analysts import AnalystNameError, NotAnAnalyst, grant_login
    from consumers.readmodel_store import analyst_views
    from projections import PROJECTIONS

    password = secrets.token_urlsafe(24)
    schemas = {name: analyst_views(projection) for name, projection in PROJECTIONS.items()}
    try:
        with _connect(settings) as conn:
            grant_login(conn, args.name, password, schemas)
    except (AnalystNameError, NotAnAnalyst, InsufficientPrivilege) as error:
        print(f"crm: {str(error).strip()}", file=sys.stderr)
        return 1
    print(f"analyst {args.name}: password {password}")
    print(f"connect with: {analyst_url(settings, args.name, password)}")
    return 0


def _revoke(args: argparse.Namespace, settings: Settings) -> int:
    from psycopg.errors import DependentObjectsStillExist, InsufficientPrivilege

    from consumers.analysts import AnalystNameError, NotAnAnalyst, revoke_login

    try:
        with _connect(settings) as conn:
            revoke_login(conn, args.name)
    except (AnalystNameError, NotAnAnalyst, InsufficientPrivilege) as error:
        print(f"crm: {str(error).strip()}", file=sys.stderr)
        return 1
    except DependentObjectsStillExist as error:  # it owns objects in another database
        print(f"crm: {str(error).strip()}", file=sys.stderr)
        print(f"crm: analyst {args.name} can no longer log in; drop those objects and"
              " revoke again", file=sys.stderr)  # fmt: skip
        return 1
    print(f"analyst {args.name}: revoked")
    return 0


def _connect(settings: Settings) -> Any:
    import psycopg

    from services.bootstrap import check_database

    if settings.database_url is None:
        raise ConfigError("CRM_DATABASE_URL", "analysts' logins need PostgreSQL")
    check_database(settings.database_url)
    return psycopg.connect(settings.database_url, autocommit=True)


_SERVER_PARAMETERS = frozenset((
    "host", "hostaddr", "port", "connect_timeout", "target_session_attrs", "load_balance_hosts",
    "sslmode", "sslrootcert", "sslcrl", "sslcrldir", "sslsni", "channel_binding",
    "ssl_min_protocol_version", "ssl_max_protocol_version", "gssencmode",
))  # fmt: skip
"""What an analyst's URL keeps of the service's: where the server is and how to check it
is the real one; never the service's own credentials (password, passfile, client
certificate and key)."""


def analyst_url(settings: Settings, name: str, password: str) -> str:
    """CRM_DATABASE_URL with the analyst's credentials instead of the service's: the same
    server (host:port, or a socket directory in `?host=`) and server checks."""
    parts = urlsplit(settings.database_url or "")
    server = parts.netloc.rpartition("@")[2]
    login = f"{quote(name, safe='')}:{quote(password, safe='')}@{server}"
    kept = [(k, v) for k, v in parse_qsl(parts.query) if k in _SERVER_PARAMETERS]
    return urlunsplit(parts._replace(netloc=login, query=urlencode(kept)))
