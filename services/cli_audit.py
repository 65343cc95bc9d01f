"""`crm audit ...`: what auditors run. History and past state of any aggregate
(`services.cli_audit_past`), the access log (`services.cli_audit_access`), and the
proof that the history is complete and unaltered: `verify`, `prove`, `checkpoint`,
`public-key`, and the one-time `seal-existing` (see `docs/audit.md`).

Exit codes: 0 done (verify: no break, and signed checkpoints anchor the log), 1 a break
or a refusal, 2 configuration or usage, 3 (verify) no break, but no signed checkpoint
lies in the range walked: nothing proves the events are the ones once recorded.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import closing, contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any
from uuid import UUID

from services import cli_audit_access, cli_audit_past
from services.bootstrap import Runtime, bootstrap
from services.cli_args import POSITION, POSITION_LIMIT, add_range, int_between
from services.settings import ConfigError, Settings

if TYPE_CHECKING:
    from consumers.relay_position import PublishedChain
    from services.audit_keys import SigningKey


def register(commands: argparse._SubParsersAction[Any]) -> None:
    """Add `crm audit` and its actions."""
    audit = commands.add_parser(
        "audit", help="history, past state, and proof that the log is complete and unaltered"
    )
    actions = audit.add_subparsers(dest="action", required=True, metavar="ACTION")
    cli_audit_past.register(actions)
    _register_integrity(actions)
    cli_audit_access.register(actions)


def _register_integrity(actions: argparse._SubParsersAction[Any]) -> None:
    _register_verify(actions)
    prove = actions.add_parser("prove", help="inclusion evidence for one event (JSON)")
    prove.add_argument("id", type=UUID)
    prove.add_argument("version", type=int_between(1, POSITION_LIMIT))
    prove.add_argument(
        "--checkpoint", type=POSITION, metavar="P", help="position of the checkpoint to prove to"
    )
    prove.set_defaults(handler=_prove)
    checkpoint = actions.add_parser("checkpoint", help="sign a checkpoint at the head now")
    checkpoint.add_argument(
        "--adopt",
        action="store_true",
        help="once, after upgrading to a signer that keeps <key file>.last-signed (or after"
        " losing that file with its backup): verify the whole log, then take the store's"
        " newest checkpoint, which this key must have signed, as what it signed last"
        " (refused while `crm relay` runs on this key: stop it first)",
    )
    checkpoint.set_defaults(handler=_checkpoint)
    public_key = actions.add_parser("public-key", help="the checkpoint signing key, to pin")
    public_key.add_argument("--pem", action="store_true", help="PEM instead of hex")
    public_key.set_defaults(handler=_public_key)
    seal = actions.add_parser(
        "seal-existing", help="once: chain the events recorded before the hash chain"
    )
    seal.set_defaults(handler=_seal_existing)


def _register_verify(actions: argparse._SubParsersAction[Any]) -> None:
    verify = actions.add_parser(
        "verify",
        help="recompute the hash chain, check it against signed checkpoints",
        description="Recompute the hash chain and Merkle tree, check them against the"
        " signed checkpoints, and name the first break. The summary says how many events"
        " lie after the last signed checkpoint (not yet signed: deleting them is seen only"
        " against the relay's position on PostgreSQL, or checkpoints signed later).",
        epilog="exit status: 0 intact; 1 a break (edited, deleted, inserted, reordered);"
        " 2 configuration or usage error; 3 no break, but no signed checkpoint lies in the"
        " range walked (an empty store, or one whose checkpoints are gone: unanchored)."
        " A checkpoint on Kafka that the pinned key did not sign is ignored with a warning"
        " (anyone who can produce to the topic can write one); in the store or in"
        " --checkpoints FILE it is a break",
    )
    add_range(
        verify,
        POSITION,
        metavar="P",
        first="first position to check",
        last="last position to check",
    )
    verify.add_argument(
        "--kafka",
        action="store_true",
        help="also check every record on the event topics, against the checkpoints on"
        " crm.audit.checkpoints.v1 too",
    )
    verify.add_argument(
        "--public-key", metavar="KEY", help="pinned key: 64 hex digits or a key file"
    )
    verify.add_argument(
        "--checkpoints",
        type=Path,
        metavar="FILE",
        help="checkpoints kept elsewhere (JSON lines or API answer)",
    )
    verify.set_defaults(handler=_verify)


# --- integrity ---------------------------------------------------------------------------


def _verify(args: argparse.Namespace, settings: Settings) -> int:
    from services.audit_verify import verify_log
    from services.cli_audit_support import (
        checkpoints_to_check,
        comparisons,
        exit_code,
        pinned_key,
        summary,
    )
    from services.progress import progress_bar

    public_key = pinned_key(args.public_key, settings)
    with closing(bootstrap(settings)) as runtime, closing(_audit_log(runtime)) as log:
        checkpoints, on_kafka = checkpoints_to_check(
            log, settings, args.checkpoints, kafka=args.kafka
        )
        checks = comparisons(log, settings, kafka=args.kafka)
        total = log.count_between((args.start or 1) - 1, args.end or (1 << 62))
        with progress_bar("verifying", total) as advance:
            report = verify_log(
                log, checkpoints, public_key, start=args.start, end=args.end,
                untrusted=on_kafka, comparisons=checks, progress=advance,
            )  # fmt: skip
    print(summary(report))
    return exit_code(report)


def _prove(args: argparse.Namespace, settings: Settings) -> int:
    from services.audit_prove import ProveError, encode, prove

    with closing(bootstrap(settings)) as runtime, closing(_audit_log(runtime)) as log:
        try:
            evidence = prove(log, args.id, args.version, args.checkpoint)
        except ProveError as error:
            print(f"crm audit prove: {error}", file=sys.stderr)
            return 1
    sys.stdout.write(encode(evidence).decode() + "\n")
    return 0


def _checkpoint(args: argparse.Namespace, settings: Settings) -> int:
    from domain.checkpoint import encode
    from services.checkpointer import CheckpointRefused, PublishFailed

    if args.adopt:
        return _adopt(settings)
    out = sys.stdout  # the checkpoint alone, so that `> file` is what --checkpoints reads
    with (
        contextlib.redirect_stdout(sys.stderr),  # log lines (services.logs: stdout) to stderr
        closing(bootstrap(settings)) as runtime,
        closing(_checkpointer(runtime)) as checkpointer,
    ):
        try:
            signed = checkpointer.checkpoint()
            print(encode(signed).decode() if signed else "nothing new to sign", file=out)
            checkpointer.publish_pending()
        except CheckpointRefused as error:
            print(f"crm audit checkpoint: {error}", file=sys.stderr)
            return 1
        except PublishFailed as error:
            print(f"crm audit checkpoint: stored; {error} (the relay retries)", file=sys.stderr)
    return 0


def _adopt(settings: Settings) -> int:
    from domain.checkpoint import encode
    from services.audit_published import adopt_head, head_path
    from services.relay_key_lock import LockFileUnusable, RelayRunning, no_relay_of
    from services.signer_memory import CheckpointRefused, adopt

    key = _signing_key(settings, create=False)
    try:
        with (
            no_relay_of(settings.audit_key_file, "adopting"),  # it writes <key>.published
            closing(bootstrap(settings)) as runtime,
            closing(_audit_log(runtime)) as log,
        ):
            record = adopt(log, key)
            head = adopt_head(log, key, record.checkpoint)  # the log verified: its head
    except (CheckpointRefused, RelayRunning, LockFileUnusable) as error:
        print(f"crm audit checkpoint: {error}", file=sys.stderr)
        return 1
    if head is not None:
        print(
            f"crm audit checkpoint: {head_path(key)} replaced: the relay's head remembered"
            f" there was another store's; now position {head.position} (adopted)",
            file=sys.stderr,
        )
    print(encode(record.checkpoint).decode())
    return 0


def _public_key(args: argparse.Namespace, settings: Settings) -> int:
    from services.signer_memory import CheckpointRefused, refuse_new_key

    key = _signing_key(settings, create=True)
    if not key.exists():  # made by printing it: only for a store that holds no checkpoint
        with closing(bootstrap(settings)) as runtime, closing(_audit_log(runtime)) as log:
            try:
                refuse_new_key(log, key)
            except CheckpointRefused as error:
                print(f"crm audit public-key: {error}", file=sys.stderr)
                return 1
    print(key.public_pem().strip() if args.pem else key.public_key.hex())
    return 0


def _signing_key(settings: Settings, *, create: bool) -> SigningKey:
    """The key `CRM_AUDIT_KEY_FILE` names (a missing one made on first use if `create`);
    an unreadable or (without `create`) missing file is a configuration error."""
    from services.audit_keys import KeyFileError, load_existing, load_or_create

    try:
        return (load_or_create if create else load_existing)(settings.audit_key_file)
    except KeyFileError as error:
        raise ConfigError("CRM_AUDIT_KEY_FILE", str(error)) from None


def _seal_existing(args: argparse.Namespace, settings: Settings) -> int:
    from services.audit_seal import SealRefused, seal_existing
    from services.progress import progress_bar

    with closing(bootstrap(settings)) as runtime, closing(_audit_log(runtime)) as log:
        try:
            with progress_bar("sealing", log.count_between(0, 1 << 62)) as advance:
                chained = seal_existing(log, advance)
        except SealRefused as error:
            print(f"crm audit seal-existing: {error}", file=sys.stderr)
            return 1
    print(f"chained {chained} events" if chained else "nothing to seal: every event is chained")
    return 0


def _audit_log(runtime: Runtime) -> Any:
    from services.audit_log import open_audit_log

    return open_audit_log(runtime.app)


def _checkpointer(runtime: Runtime, published: PublishedChain | None = None) -> Any:
    """A checkpointer for the runtime's store; it publishes to Kafka unless embedded.
    Given the relay's `published` chain (`crm relay`), it signs only what the relay
    published."""
    from services.checkpoint_topic import KafkaCheckpointPublisher
    from services.checkpointer import Checkpointer

    settings = runtime.settings
    key = _signing_key(settings, create=True)
    publish = (
        None
        if settings.embedded
        else KafkaCheckpointPublisher(settings.kafka_bootstrap, settings.topic_prefix)
    )
    return Checkpointer(
        _audit_log(runtime),
        key,
        every_events=settings.audit_checkpoint_events,
        every_seconds=settings.audit_checkpoint_seconds,
        publish=publish,
        published=published,
        lag_limit_s=None if published is None else _stale_after(settings.audit_checkpoint_seconds),
    )


def _stale_after(interval_s: float) -> float:
    """`/readyz`'s rule for a signer that stopped keeping up (`SignerWatch`), for the
    relay that feeds it: `STALE_FACTOR` intervals plus `STALE_GRACE_S`."""
    from services.api.readiness import STALE_FACTOR, STALE_GRACE_S

    return STALE_FACTOR * interval_s + STALE_GRACE_S


@contextmanager
def running_checkpointer(
    runtime: Runtime,
    report: Callable[[str | None], None] | None = None,
    published: PublishedChain | None = None,
) -> Iterator[None]:
    """Sign (and, with Kafka, publish) checkpoints in a thread while the block runs;
    `report` is told each change of its trouble (`Checkpointer.run`); `published`: the
    chain of the relay in this process, which bounds what is signed."""
    stop = threading.Event()
    checkpointer = _checkpointer(runtime, published)
    thread = threading.Thread(
        target=checkpointer.run, args=(stop, 1.0, report), name="crm-checkpointer",
        daemon=True,
    )  # fmt: skip
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(timeout=10)
        checkpointer.close()
