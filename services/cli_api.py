"""`crm run`, `crm api`, `crm principals ...`, `crm stats ...`, `crm demo`.

`crm run` is the embedded default: SQLite event store in CRM_DATA_DIR, the API and the
projections following the store in this one process. `crm api` serves the API against
PostgreSQL and reads the read models the `crm consume NAME` processes keep there.
"""

from __future__ import annotations

import argparse
import sys
import threading
from typing import Any

import msgspec

from services.bootstrap import Runtime, bootstrap, wait_for_database
from services.cli_args import PORT, add_range, int_between, zoned_time
from services.settings import HTTP_SERVERS, ConfigError, Settings
from services.shutdown import stop_on_signals

BOOTSTRAP_ADMIN = "admin"


def register(commands: argparse._SubParsersAction[Any]) -> None:
    """Add this module's subcommands to `crm`."""
    run = commands.add_parser("run", help="embedded: API + projections on SQLite, one process")
    _serve_options(run)
    run.set_defaults(handler=_run)
    api = commands.add_parser("api", help="the HTTP API against PostgreSQL (CRM_DATABASE_URL)")
    _serve_options(api)
    api.add_argument(
        "--workers",
        type=int_between(1, 64),
        default=1,
        help="API processes (each with its own group commit)",
    )
    api.set_defaults(handler=_api)
    _register_principals(commands)
    _register_stats(commands)
    demo = commands.add_parser("demo", help="load a realistic scenario through the service layer")
    demo.add_argument("--customers", type=int_between(1, 1_000_000), default=300)
    demo.set_defaults(handler=_demo)


def _serve_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=PORT, default=8000)
    parser.add_argument(
        "--server", choices=HTTP_SERVERS, help="HTTP server (default: CRM_HTTP_SERVER, uvicorn)"
    )


def _register_principals(commands: argparse._SubParsersAction[Any]) -> None:
    principals = commands.add_parser("principals", help="API principals and their tokens")
    actions = principals.add_subparsers(dest="action", required=True, metavar="ACTION")
    add = actions.add_parser("add", help="create a principal and print its token (once)")
    add.add_argument("name")
    add.add_argument("--department", required=True)
    add.add_argument("--role", required=True, help="agent|manager|analyst|auditor|service|admin")
    add.set_defaults(handler=_principals_add)
    actions.add_parser("list", help="list principals").set_defaults(handler=_principals_list)
    revoke = actions.add_parser("revoke", help="revoke a principal's token")
    revoke.add_argument("name")
    revoke.set_defaults(handler=_principals_revoke)


def _register_stats(commands: argparse._SubParsersAction[Any]) -> None:
    stats = commands.add_parser("stats", help="satisfaction statistics")
    actions = stats.add_subparsers(dest="action", required=True, metavar="ACTION")
    satisfaction = actions.add_parser("satisfaction", help="CSAT and NPS per period")
    satisfaction.add_argument("--department")
    satisfaction.add_argument("--agent")
    add_range(satisfaction, zoned_time, first="RFC 3339, with a zone", last="RFC 3339, with a zone")
    satisfaction.add_argument("--granularity", choices=("day", "week", "month"), default="day")
    satisfaction.add_argument(
        "--json", action="store_true", help="what GET /v1/stats/satisfaction answers"
    )
    satisfaction.set_defaults(handler=_stats_satisfaction)


# --- serving --------------------------------------------------------------------------


def _run(args: argparse.Namespace, settings: Settings) -> int:
    if not settings.embedded:
        raise ConfigError("CRM_DATABASE_URL", "`crm run` is embedded (SQLite); use `crm api`")
    _stop_like_ctrl_c("run")
    from consumers.follower import EventStoreFollower, applied_position
    from consumers.store_sqlite import SqliteStore
    from projections import PROJECTIONS
    from services.api import create_app
    from services.api.read_models import ReadModels
    from services.api.readiness import stalled_check
    from services.cli_audit import running_checkpointer

    runtime = bootstrap(settings)
    store = SqliteStore(runtime.settings.data_dir / "readmodels.db")
    follower = EventStoreFollower(runtime.app, store, PROJECTIONS.values())
    app = create_app(
        runtime,
        queries_helper=ReadModels(store),
        applied_position=lambda names: applied_position(store, names),
        readiness={"follower": stalled_check(lambda: follower.trouble)},
    )
    follower.on_applied = app.state.services.positions.poke  # wakes read-your-writes
    thread = threading.Thread(target=follower.run, name="crm-follower", daemon=True)
    thread.start()
    try:
        _announce(runtime, app, args)
        with running_checkpointer(runtime):
            _serve(app, args, settings)
    finally:
        follower.stop()
        thread.join(timeout=5)
        store.close()
        runtime.close()
    return 0


def _api(args: argparse.Namespace, settings: Settings) -> int:
    if settings.embedded:
        raise ConfigError("CRM_DATABASE_URL", "`crm api` needs PostgreSQL; `crm run` is embedded")
    from services.api_serving import HttpLimits, build_api_app, serve_workers
    from services.api_waiting import WaitingAnswers

    _print_urls(args)
    stop = _stop_like_ctrl_c("api")
    with WaitingAnswers(args.host, args.port, settings.http_receive_seconds) as waiting:
        if not wait_for_database(settings, "api", stop, on_change=waiting.down):
            return 0  # stopped while PostgreSQL was away
        built = None if args.workers > 1 else build_api_app(settings)
    if built is None:
        server = _server(args, settings)
        serve_workers(args.host, args.port, args.workers, server, HttpLimits.of(settings))
        return 0
    app, close = built
    try:
        _serve(app, args, settings)
    finally:
        close()
    return 0


def _announce(runtime: Runtime, app: Any, args: argparse.Namespace) -> None:
    principals = app.state.services.principals
    _print_urls(args)
    if not principals.exists(BOOTSTRAP_ADMIN):
        token = principals.add(BOOTSTRAP_ADMIN, "admin", "admin")
        print(f"Bootstrap admin token (shown once): {token}", flush=True)
    else:
        print(
            "Principal 'admin' exists; make another token with "
            "`crm principals add NAME --department D --role admin`",
            flush=True,
        )


def _print_urls(args: argparse.Namespace) -> None:
    print(f"CRM Collab API docs: http://{args.host}:{args.port}/docs", flush=True)
    print(f"Console: http://{args.host}:{args.port}/console/", flush=True)


def _serve(app: Any, args: argparse.Namespace, settings: Settings) -> None:
    from services.api_serving import HttpLimits, loop_for, serve

    server, limits = _server(args, settings), HttpLimits.of(settings)
    serve(app, args.host, args.port, server, loop=loop_for(settings), limits=limits)


def _server(args: argparse.Namespace, settings: Settings) -> str:
    """`--server`, else `CRM_HTTP_SERVER`."""
    return str(args.server or settings.http_server)


def _stop_like_ctrl_c(process: str) -> threading.Event:
    """SIGTERM (container runtimes, systemd) stops as SIGINT does, and both exit 0; the
    event is set by either (before serving: while waiting for PostgreSQL).

    uvicorn handles both while it serves, then raises the signal again under the
    handler that was there before: the default one would kill the process on SIGTERM
    before it closes its databases (an SQLite WAL left unmerged). With ours, the caller's
    `finally` runs.
    """
    return stop_on_signals(process)


# --- principals -----------------------------------------------------------------------


def _principals(settings: Settings) -> tuple[Runtime, Any]:
    from services.principals_store import open_principals

    runtime = bootstrap(settings)
    return runtime, open_principals(runtime.pool, settings.data_dir, settings.departments)


def _principals_add(args: argparse.Namespace, settings: Settings) -> int:
    from services.principals import PrincipalError

    runtime, principals = _principals(settings)
    try:
        token = principals.add(args.name, args.department, args.role)
    except PrincipalError as error:
        print(f"crm: {error}", file=sys.stderr)
        return 1
    finally:
        runtime.close()
    print(token)
    return 0


def _principals_list(args: argparse.Namespace, settings: Settings) -> int:
    runtime, principals = _principals(settings)
    try:
        for record in principals.list():
            state = "revoked" if record.revoked else "active"
            print(
                f"{record.name}\t{record.department}\t{record.role}\t{state}\t{record.created_at}"
            )
    finally:
        runtime.close()
    return 0


def _principals_revoke(args: argparse.Namespace, settings: Settings) -> int:
    from services.principals import PrincipalError

    runtime, principals = _principals(settings)
    try:
        principals.revoke(args.name)
    except PrincipalError as error:
        print(f"crm: {error}", file=sys.stderr)
        return 1
    finally:
        runtime.close()
    print(f"revoked {args.name}")
    return 0


# --- statistics and demo --------------------------------------------------------------


def _stats_satisfaction(args: argparse.Namespace, settings: Settings) -> int:
    from services.satisfaction_report import print_report, satisfaction_report

    runtime = bootstrap(settings)
    try:
        report = satisfaction_report(
            runtime.app,
            department=args.department,
            agent=args.agent,
            start=args.start,
            end=args.end,
            granularity=args.granularity,
        )
    finally:
        runtime.close()
    if args.json:
        print(msgspec.json.encode(report).decode())
    else:
        print_report(report)
    return 0


def _demo(args: argparse.Namespace, settings: Settings) -> int:
    from services.demo import load_demo

    runtime = bootstrap(settings)
    try:
        load_demo(runtime, customers=args.customers)
    finally:
        runtime.close()
    return 0
