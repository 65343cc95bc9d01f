"""`crm audit history ID` and `crm audit as-of ID TIME`: an aggregate's events, or its
state at an instant, as the operator may see them, recorded in the access log.

The operator holds the database credentials and reads with an auditor's rights, judged
by the one access model on the path the API's `history` and `?as_of` take
(`services.past_reads`): a field the model hides from auditors prints `[masked]` (history
leaves it sealed). As the API's reads do, each command records what it shows unmasked when
the access log is on (`CRM_ACCESS_LOG`): one record, principal `operator:<OS account>`
(`operator`), route `crm audit history` or `crm audit as-of`. It is stored before
anything is printed: a record the store refuses is exit 1 with nothing shown, as the
API refuses a read it cannot record. So `history` reads the events twice, a page at a
time (what the record names, then what it prints): memory stays flat for any history.

Exit codes: 0 shown, 1 nothing shown (no such aggregate, or none at TIME; refused; the
record could not be stored).
"""

from __future__ import annotations

import argparse
import os
import pwd
import sys
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import closing
from dataclasses import dataclass
from typing import Any
from uuid import UUID

import msgspec

from domain import codec
from domain.base import AGGREGATE_CLASSES, Aggregate, DomainEvent, NotFound
from services.access.fields import FieldAccess, mask
from services.access.resources import resource_of
from services.access.rules import Forbidden, Principal, Role
from services.access_log import AccessLog
from services.access_log_store import open_access_store
from services.bootstrap import Runtime, bootstrap
from services.cli_args import calendar_time
from services.past_reads import PastReads, shown_in_events, shown_in_state
from services.settings import Settings

HISTORY, AS_OF = "crm audit history", "crm audit as-of"
"""The routes their access records name (the API's name an HTTP method and path)."""


def register(actions: argparse._SubParsersAction[Any]) -> None:
    history = actions.add_parser("history", help="every event of one aggregate, as JSON lines")
    history.add_argument("id", type=UUID)
    history.set_defaults(handler=_history)
    as_of = actions.add_parser("as-of", help="an aggregate's state at an instant (RFC 3339)")
    as_of.add_argument("id", type=UUID)
    as_of.add_argument("time", type=calendar_time, help="RFC 3339, with a zone")
    as_of.set_defaults(handler=_as_of)


def operator() -> Principal:
    """Who runs `crm audit`: an auditor, named after the OS account of the process's real
    user id (`operator:alice`; its number when it has no account), not after USER or
    LOGNAME, which whoever runs the command sets as they like."""
    uid = os.getuid()
    try:
        account = pwd.getpwuid(uid).pw_name
    except KeyError:  # a container's user id with no entry in its passwd
        account = str(uid)
    return Principal(name=f"operator:{account}", department="it", role=Role.AUDITOR)


def _history(args: argparse.Namespace, settings: Settings) -> int:
    with closing(bootstrap(settings)) as runtime:
        read = _OperatorRead(runtime, HISTORY)
        if (found := read.now(args.id, "history.read")) is None:
            return 1
        now, fields = found

        def judged() -> Iterator[tuple[DomainEvent, FieldAccess]]:
            stored = runtime.app.sealed_events(args.id, upto=now.version)
            return read.past.events(now, fields, stored)

        if not read.recorded(lambda: shown_in_events(judged())):
            return 1
        for event, seen in judged():
            sys.stdout.write(_masked(event, event.personal_fields, seen) + "\n")
    return 0


def _as_of(args: argparse.Namespace, settings: Settings) -> int:
    with closing(bootstrap(settings)) as runtime:
        read = _OperatorRead(runtime, AS_OF)
        if (found := read.now(args.id, "as_of.read")) is None:
            return 1
        try:
            then, seen = read.past.state(found[0], args.time)
        except NotFound as error:
            print(f"crm: {error}", file=sys.stderr)
            return 1
        shown = _masked(then.state(), type(then).personal_fields, seen)
        if not read.recorded(lambda: shown_in_state(then, seen)):
            return 1
        print(shown)
    return 0


def _masked(value: Any, personal: Iterable[str], fields: FieldAccess) -> str:
    """`value` as JSON, the personal paths `fields` hides `[masked]` (as the API masks)."""
    return msgspec.json.encode(mask(msgspec.to_builtins(value), personal, fields)).decode()


@dataclass
class _OperatorRead:
    """One command's read, as the operator (`operator()`), recorded as `route`."""

    runtime: Runtime
    route: str

    def __post_init__(self) -> None:
        self.principal = operator()
        self.past = PastReads(
            self.runtime.app, self.runtime.keyring, self.runtime.access, self.principal
        )

    def now(self, aggregate_id: UUID, action: str) -> tuple[Aggregate, FieldAccess] | None:
        """The aggregate as stored now (sealed) and the operator's field access to it,
        once the access model let them read it and do `action`; None (said) if not."""
        app = self.runtime.app
        try:
            first = next(app.stored_events(aggregate_id), None)
            if first is None:
                raise NotFound("aggregate", aggregate_id)
            kind = AGGREGATE_CLASSES[codec.sealed_event(first).aggregate_type]
            now = app.sealed_load(kind, aggregate_id)
            return now, self.runtime.access.read(self.principal, resource_of(now), action)
        except NotFound:
            print(f"crm: no events for {aggregate_id}", file=sys.stderr)
        except Forbidden as refused:
            print(f"crm: {self.route}: {refused} ({refused.rule})", file=sys.stderr)
        return None

    def recorded(self, shown: Callable[[], Mapping[UUID, Iterable[str]]]) -> bool:
        """Whether what the command is about to print (`shown()`: customer -> personal
        fields unmasked, worked out only while the access log records) is on record:
        stored now, on this thread. False (said) when the store refused it."""
        settings = self.runtime.settings
        if settings.access_log == "off":
            print(f"crm: {self.route}: not recorded (CRM_ACCESS_LOG=off)", file=sys.stderr)
            return True
        shown_now = shown()
        try:
            store = open_access_store(self.runtime.pool, settings.data_dir)
            self.runtime.closers.append(store.close)
            log = AccessLog(store)  # `switch` is a server's (SIGUSR1): a command records
            log.reveal(self.principal, self.route, shown_now)
            log.flush()
        except Exception as error:  # any store's refusal (a full disk, PostgreSQL away...)
            print(
                f"crm: {self.route}: the access log could not store this read's record"
                f" ({error}); nothing shown",
                file=sys.stderr,
            )
            return False
        return True
