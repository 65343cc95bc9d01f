"""`crm relay`, `crm relay status`, `crm topics ensure`: publishing the event log to Kafka.

The relay needs PostgreSQL (CRM_DATABASE_URL): its position lives beside the event
store. One relay runs per signing key: a second waits (`services.relay_key_lock`).
Exit codes: 0 stopped by a signal, 2 configuration, 3 poison event, 4 unsafe topics,
5 its key's lock file deleted or replaced and locked by another relay (restarted, it waits).
"""

from __future__ import annotations

import argparse
import sys
import threading
from contextlib import closing
from typing import TYPE_CHECKING, Any

import msgspec

from services.bootstrap import require_kafka, wait_for_database, wait_for_kafka
from services.cli_args import int_between
from services.relay_key_lock import LockLost, sole_relay_of
from services.settings import Settings
from services.shutdown import stop_on_signals

if TYPE_CHECKING:
    from consumers.outage import Dependencies
    from consumers.relay_position import PublishedChain


def register(commands: argparse._SubParsersAction[Any]) -> None:
    """Add this module's subcommands to `crm`."""
    relay = commands.add_parser(
        "relay", help="publish the event log to Kafka, in order, at least once"
    )
    relay.add_argument(
        "--allow-unsafe-topics",
        action="store_true",
        help="publish even if a topic's retention or compaction would delete events",
    )
    relay.set_defaults(handler=_run)
    actions = relay.add_subparsers(dest="action", metavar="ACTION")
    status = actions.add_parser("status", help="relay position, head of the log and lag")
    status.add_argument("--json", action="store_true", help="one JSON object")
    status.set_defaults(handler=_status)

    topics = commands.add_parser("topics", help="the Kafka topics events are published to")
    topic_actions = topics.add_subparsers(dest="action", required=True, metavar="ACTION")
    ensure = topic_actions.add_parser(
        "ensure", help="create missing topics with retention forever, check existing ones"
    )
    ensure.add_argument(
        "--partitions",
        type=int_between(1, 10_000),
        default=None,
        help="default CRM_KAFKA_PARTITIONS",
    )
    ensure.set_defaults(handler=_ensure)


def _require_database(settings: Settings) -> str | None:
    if settings.database_url is None:
        print(
            "crm relay: CRM_DATABASE_URL is required (the relay publishes the PostgreSQL "
            "event store and keeps its position there)",
            file=sys.stderr,
        )
    return settings.database_url


def _run(args: argparse.Namespace, settings: Settings) -> int:
    from consumers.kafka_records import KafkaFailure
    from consumers.relay import RelayPoisoned, UnsafeTopics

    if _require_database(settings) is None:
        return 2
    stop = stop_on_signals("relay")
    try:
        with sole_relay_of(settings.audit_key_file, stop) as held:  # one relay a key
            if held and wait_for_database(settings, "relay", stop):
                _serve(settings, stop, allow_unsafe=args.allow_unsafe_topics)
    except RelayPoisoned as error:
        print(f"crm relay: {error}", file=sys.stderr)
        return 3
    except UnsafeTopics as error:
        print(f"crm relay: {error}", file=sys.stderr)
        return 4
    except KafkaFailure as error:
        print(f"crm relay: {error}", file=sys.stderr)
        return 1
    except LockLost as error:  # stopped by its lock's keeper: not a signal's exit 0
        print(f"crm relay: {error}", file=sys.stderr)
        return 5
    return 0


def _serve(settings: Settings, stop: threading.Event, *, allow_unsafe: bool) -> None:
    from consumers.kafka_io import Producer
    from consumers.outage import Dependencies
    from consumers.process_health import HealthReport
    from consumers.relay import Relay
    from consumers.relay_position import PostgresRelayPosition
    from consumers.relay_trouble import Troubles
    from consumers.relay_wakeup import wakeup_for
    from services.access_log_store import open_access_store
    from services.access_topic import running_access_publisher
    from services.bootstrap import bootstrap
    from services.cli_audit import running_checkpointer

    runtime = bootstrap(settings)
    try:
        assert runtime.pool is not None
        health = HealthReport(runtime.pool, "relay")
        troubles = Troubles(health.trouble)  # the relay's lock waits, its signer's trouble
        deps = Dependencies("relay", on_change=health.down)
        if not wait_for_kafka(settings, deps, stop):  # its row says so meanwhile
            return
        if not _prepare_topics(settings, stop, deps, allow_unsafe=allow_unsafe):
            return
        recorder = runtime.app.recorder
        published = _published_chain(runtime)
        relay = Relay(
            recorder,
            lambda: Producer(settings.kafka_bootstrap, client_id="crm-relay"),
            PostgresRelayPosition(runtime.pool),
            topic_prefix=settings.topic_prefix,
            wakeup=wakeup_for(recorder, settings.database_url),
            dependencies=deps,
            published=published,
            report=troubles.of("relay"),
        )
        access = open_access_store(runtime.pool, settings.data_dir)
        publishing = running_access_publisher(
            access, settings.kafka_bootstrap, settings.topic_prefix
        )
        try:
            signer = troubles.of("signer")
            signing = running_checkpointer(runtime, report=signer, published=published)
            with signing, publishing:
                relay.run(stop)
        finally:
            relay.close()
    finally:
        runtime.close()


def _published_chain(runtime: Any) -> PublishedChain:
    """What the relay hands the signer of this process: its chain, started from the
    store's link at the relay's stored position (read here, once, as the relay starts),
    only if the store still gives the head remembered beside the signing key; else no
    head at all for this run (`services.audit_published.checked_anchor`). Each head is
    remembered beside the key before the relay stores its position (`remembering`)."""
    from consumers.relay_position import PublishedChain
    from services.audit_keys import SigningKey
    from services.audit_log import open_audit_log
    from services.audit_published import checked_anchor, remembering

    key = SigningKey(runtime.settings.audit_key_file)  # its path: the file beside it
    anchor = checked_anchor(key, lambda: closing(open_audit_log(runtime.app)))
    return PublishedChain(anchor, remembering(key, open_audit_log(runtime.app)))


def _prepare_topics(
    settings: Settings, stop: threading.Event, deps: Dependencies, *, allow_unsafe: bool
) -> bool:
    """Wait for the broker, create missing topics, refuse unsafe ones; False if stopped."""
    from consumers.envelope import all_topics
    from consumers.kafka_io import ensure_topics
    from consumers.kafka_records import BrokerUnavailable
    from consumers.outage import KAFKA
    from consumers.relay import verify_topics
    from services.access_topic import ensure_access_topic
    from services.checkpoint_topic import ensure_checkpoint_topic

    while not stop.is_set():
        try:
            bootstrap, prefix = settings.kafka_bootstrap, settings.topic_prefix
            ensure_topics(bootstrap, all_topics(prefix), settings.kafka_partitions)
            ensure_checkpoint_topic(bootstrap, prefix)
            ensure_access_topic(bootstrap, prefix)
            verify_topics(bootstrap, prefix, allow_unsafe=allow_unsafe)
            deps.back(KAFKA)
            return True
        except BrokerUnavailable as error:
            stop.wait(deps.lost(KAFKA, error))
    return False


def _status(args: argparse.Namespace, settings: Settings) -> int:
    from consumers.pg_lock_wait import LockWaitTimedOut
    from consumers.relay_position import PostgresRelayPosition, relay_status
    from services.bootstrap import bootstrap

    if _require_database(settings) is None:
        return 2
    runtime = bootstrap(settings)
    try:
        assert runtime.pool is not None
        status = relay_status(runtime.app.recorder, PostgresRelayPosition(runtime.pool))
    except LockWaitTimedOut as error:
        print(f"crm relay status: {error}", file=sys.stderr)
        return 1
    finally:
        runtime.close()
    if args.json:
        print(msgspec.json.encode(status).decode())
    else:
        print(f"position     {status.position}")
        print(f"head         {status.head}")
        print(f"lag events   {status.lag_events}")
        print(f"lag seconds  {status.lag_seconds:.3f}")
    return 0


def _ensure(args: argparse.Namespace, settings: Settings) -> int:
    from consumers.envelope import all_topics
    from consumers.kafka_io import ensure_topics
    from consumers.kafka_records import KafkaFailure
    from consumers.relay import UnsafeTopics, verify_topics
    from services.access_topic import access_topic, ensure_access_topic
    from services.checkpoint_topic import checkpoint_topic, ensure_checkpoint_topic

    require_kafka(settings)
    partitions = args.partitions or settings.kafka_partitions
    topics = all_topics(settings.topic_prefix)
    try:
        created = set(ensure_topics(settings.kafka_bootstrap, topics, partitions))
        created |= set(ensure_checkpoint_topic(settings.kafka_bootstrap, settings.topic_prefix))
        created |= set(ensure_access_topic(settings.kafka_bootstrap, settings.topic_prefix))
        prefix = settings.topic_prefix
        for topic in [*topics, checkpoint_topic(prefix), access_topic(prefix)]:
            print(f"{topic}: {'created' if topic in created else 'exists'}")
        verify_topics(settings.kafka_bootstrap, settings.topic_prefix)
    except (UnsafeTopics, KafkaFailure) as error:
        print(f"crm topics: {error}", file=sys.stderr)
        return 4 if isinstance(error, UnsafeTopics) else 1
    return 0
