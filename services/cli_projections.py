"""`crm consume NAME` and `crm projections status|rejected|rebuild|verify|retry`.

`consume` runs the projection runner for one projection (consumer group
`crm.projection.NAME`) until SIGTERM/SIGINT; it writes through a child process
(`consumers.projection_writer`) unless `--single-process`. It rides out database and
broker outages and reports them, with its watchdog's and writer's restarts, in
`crm_process_health` (`consumers.process_health`) for the API's /readyz and /metrics.
Those that read Kafka check each record against the PostgreSQL event store
(`consumers.as_stored`), so `consume` and `verify` need `CRM_DATABASE_URL` (the
embedded default has no Kafka consumers: its projections follow the event store, and
its `rebuild` and `retry` replay it). Exit codes: 0 done, 1 differences found by `verify`,
events still failing after `retry`, a writer process that failed, or a `rebuild` whose
switch gave up waiting for locks other sessions held (named; nothing switched); 2
configuration error.
"""

from __future__ import annotations

import argparse
import functools
import json
import re
import sys
from typing import Any

from services.bootstrap import wait_for_database, wait_for_kafka
from services.cli_args import int_between
from services.logs import configure_logging
from services.settings import ConfigError, Settings
from services.shutdown import stop_on_signals


def register(commands: argparse._SubParsersAction[Any]) -> None:
    """Add this module's subcommands to `crm`."""
    consume = commands.add_parser("consume", help="run one projection from Kafka")
    consume.add_argument("name", help="sales | support | marketing | shared | stats")
    consume.add_argument("--until-caught-up", action="store_true", help="exit when no lag")
    consume.add_argument(
        "--batch", type=int_between(1, 100_000), default=5000, help="max records per batch"
    )
    consume.add_argument(
        "--single-process",
        action="store_true",
        help="write in this process instead of a child beside it (one core, or to profile)",
    )
    consume.set_defaults(handler=_consume)
    group = commands.add_parser("projections", help="read models: status and maintenance")
    actions = group.add_subparsers(dest="action", required=True, metavar="ACTION")
    status = actions.add_parser(
        "status", help="generation, lag, dead letters, rejected records, last event"
    )
    status.add_argument("--json", action="store_true", help="one JSON object")
    status.set_defaults(handler=_status)
    rejected = actions.add_parser(
        "rejected",
        help="the newest rejected records of one projection: where and why",
        description="The newest rows of the live version's rejected records. A row is a"
        " run: consecutive rejections in one partition claiming the same position for the"
        " same reason (offsets FIRST..LAST, how many, since when). Only the newest 1,000"
        " rows are kept; `status` counts every rejected record.",  # rejected_runs.ROWS
    )
    rejected.add_argument("name")
    rejected.add_argument("--limit", type=int_between(1, 100_000), default=50)
    rejected.add_argument("--json", action="store_true", help="one JSON array")
    rejected.set_defaults(handler=_rejected)
    for action, text, handler in (
        ("rebuild", "rebuild beside the live version from offset 0, then switch", _rebuild),
        ("verify", "rebuild into a scratch version and list rows that differ", _verify),
        ("retry", "re-apply the dead letters", _retry),
    ):
        parser = actions.add_parser(action, help=text)
        parser.add_argument("name")
        parser.set_defaults(handler=handler)


def _runtime(settings: Settings) -> Any:
    from services.bootstrap import bootstrap

    return bootstrap(settings)


def _store(settings: Settings) -> Any:
    from consumers.store_factory import open_store

    return open_store(settings.database_url, settings.data_dir)


def _projection(name: str) -> Any:
    from projections import PROJECTIONS

    if name not in PROJECTIONS:
        print(f"crm: unknown projection {name!r}; one of {', '.join(PROJECTIONS)}", file=sys.stderr)
        sys.exit(2)
    return PROJECTIONS[name]


def _source(settings: Settings, runtime: Any) -> Any:
    from consumers.envelope import all_topics
    from consumers.rebuild import Source

    topics = all_topics(settings.topic_prefix)
    return Source(
        settings.kafka_bootstrap, topics, runtime.keyring, runtime.as_stored(),
        settings.topic_prefix,
    )  # fmt: skip


def _require_database(settings: Settings, command: str) -> None:
    """Reading Kafka needs the PostgreSQL event store its records are checked against."""
    if settings.embedded:
        raise ConfigError(
            "CRM_DATABASE_URL",
            f"required: crm {command} checks each Kafka record against the PostgreSQL event"
            " store (the embedded default's projections follow their own store, no Kafka)",
        )


def _consume(args: argparse.Namespace, settings: Settings) -> int:
    from consumers.envelope import all_topics
    from consumers.outage import Dependencies
    from consumers.process_health import HealthReport
    from consumers.runner import ProjectionRunner, group_id

    _projection(args.name)
    _require_database(settings, "consume")
    process = f"consume {args.name}"
    stop = stop_on_signals(process)
    if not wait_for_database(settings, process, stop):
        return 0
    runtime, store = _runtime(settings), _store(settings)
    try:
        health = None if runtime.pool is None else HealthReport(runtime.pool, process)
        deps = Dependencies(process, on_change=health.down if health else None)
        if not wait_for_kafka(settings, deps, stop):  # its row says so meanwhile
            return 0
        runner = ProjectionRunner(
            store, args.name, runtime.keyring, runtime.as_stored(),
            settings.kafka_bootstrap, all_topics(settings.topic_prefix),
            group=group_id(args.name, settings.topic_prefix), max_poll_records=args.batch,
            writer_process=not args.single_process,
            watchdog_seconds=settings.consumer_watchdog_seconds, dependencies=deps,
            on_restart=health.count if health else None,
            log_setup=functools.partial(configure_logging, settings), stop_event=stop,
        )  # fmt: skip
        runner.run(until_caught_up=args.until_caught_up)
    finally:
        store.close()
        runtime.close()
    return 0


def _status(args: argparse.Namespace, settings: Settings) -> int:
    from projections import PROJECTIONS

    store = _store(settings)
    try:
        rows = [_status_row(store.status(name)) for name in PROJECTIONS]
    finally:
        store.close()
    if args.json:
        print(json.dumps({r["name"]: r for r in rows}, default=str))
        return 0
    print(
        f"{'projection':<12}{'version':>8}{'events':>12}{'lag':>10}{'dead':>7}{'rejected':>10}"
        "  last event"
    )
    for r in rows:
        print(
            f"{r['name']:<12}{r['generation'] or '-':>8}{r['events']:>12}"
            f"{r['lag'] if r['lag'] is not None else '-':>10}{r['dead_letters']:>7}"
            f"{r['rejected']:>10}  {r['last_event_at'] or '-'}"
        )
    return 0


def _status_row(status: Any) -> dict[str, Any]:
    return {
        "name": status.name, "generation": status.generation, "events": status.events,
        "lag": status.lag, "dead_letters": status.dead_letters, "rejected": status.rejected,
        "last_event_at": status.last_event_at and status.last_event_at.isoformat(),
    }  # fmt: skip


_REJECTED = "SELECT * FROM {rejected} ORDER BY id DESC LIMIT %(limit)s"
"""Every column: a generation no consumer has written since the runs' columns were added
(`consumers.rejected_runs`) has rows of one record each without them."""
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")


def _rejected(args: argparse.Namespace, settings: Settings) -> int:
    """The newest rejected records (`consumers.projecting`) of the live version. A
    reason may quote what a record claimed: control characters are shown escaped."""
    projection, store = _projection(args.name), _store(settings)
    try:
        generation = store.live_generation(projection.name)
        table = {"rejected": f"{projection.name}_v{generation}._rejected"}
        limit = {"limit": args.limit}
        found = [] if generation is None else store.fetch(_REJECTED, table, limit)
    finally:
        store.close()
    rows = [_run(r) for r in found]
    if args.json:
        print(json.dumps(rows, default=str))
        return 0
    for r in rows:
        where = f"{r['topic']}[{r['partition']}]@{r['kafka_offset']}"
        if r["records"] > 1:
            where += f"..{r['last_offset']} ({r['records']} records since {r['at']})"
        reason = _CONTROL.sub(lambda c: f"\\x{ord(c.group()):02x}", r["reason"])
        print(f"{r['last_at']}  {where}  position {r['position']}  {reason}")
    return 0


def _run(row: dict[str, Any]) -> dict[str, Any]:
    """A `_rejected` row as a run (one written one per record is a run of one)."""
    last_offset, last_at = row.get("last_offset"), row.get("last_at")
    return {
        "topic": row["topic"], "partition": row["partition"],
        "kafka_offset": row["kafka_offset"],
        "last_offset": row["kafka_offset"] if last_offset is None else last_offset,
        "records": row.get("records", 1), "position": row["position"], "reason": row["reason"],
        "at": row["at"], "last_at": row["at"] if last_at is None else last_at,
    }  # fmt: skip


def _rebuild(args: argparse.Namespace, settings: Settings) -> int:
    from consumers.follower import rebuild_from_store
    from consumers.readmodel_store import LocksHeld
    from consumers.rebuild import rebuild

    projection = _projection(args.name)
    runtime, store = _runtime(settings), _store(settings)
    try:
        if settings.embedded:  # no Kafka: replay the event store itself
            generation = rebuild_from_store(runtime.app, store, projection)
        else:
            with _progress(f"rebuilding {args.name}") as advance:
                generation = rebuild(store, projection, _source(settings, runtime), advance)
        print(f"{args.name}: version {generation} is live")
    except LocksHeld as error:  # the switch gave up: rolled back, the rebuilt version dropped
        print(f"crm: {error}", *getattr(error, "__notes__", []), file=sys.stderr)
        return 1
    finally:
        store.close()
        runtime.close()
    return 0


def _verify(args: argparse.Namespace, settings: Settings) -> int:
    from consumers.rebuild import verify

    projection = _projection(args.name)
    _require_database(settings, "projections verify")
    runtime, store = _runtime(settings), _store(settings)
    try:
        with _progress(f"verifying {args.name}") as advance:
            differences = verify(store, projection, _source(settings, runtime), advance)
    finally:
        store.close()
        runtime.close()
    for d in differences[:50]:
        print(f"{d.table} {d.key}: live={d.live} rebuilt={d.rebuilt}")
    print(f"{args.name}: {len(differences)} rows differ")
    return 1 if differences else 0


def _retry(args: argparse.Namespace, settings: Settings) -> int:
    from consumers.follower import retry_from_store

    projection = _projection(args.name)
    runtime, store = _runtime(settings), _store(settings)
    try:
        if settings.embedded:  # the follower's dead letters point into the event store
            done = retry_from_store(runtime.app, store, projection)
        else:
            from consumers.rebuild import retry

            done = retry(store, projection, runtime.keyring, runtime.as_stored())
    finally:
        store.close()
        runtime.close()
    rejected = f", {done.rejected} rejected (`status`)" if done.rejected else ""
    failing = f"{done.failing} still failing{rejected}"
    print(f"{args.name}: {done.retried} dead letters retried, {failing}")
    return 1 if done.failing else 0


def _progress(title: str) -> Any:
    from services.progress import progress_bar

    return progress_bar(title)
