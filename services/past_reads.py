"""What a read of the past shows its caller: an aggregate's events (history) or its state
at an instant (as of), each judged by the one access model as the past is judged
(`AccessModel.past_fields`), and which personal fields of which customers it shows
unmasked (what the access log records). One path for the API's `history` and `?as_of`
(`services.api.reads`) and for `crm audit history` and `crm audit as-of`
(`services.cli_audit_past`), so neither decides visibility on its own.

I/O: the event store and the keyring handed in, on the caller's thread.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import TypeVar
from uuid import UUID

from consumers.keyring import Keyring
from domain import codec
from domain.base import Aggregate, DomainEvent
from domain.conversation import Conversation
from domain.task import Task
from services.access import AccessModel, FieldAccess, Principal, resource_of, unmasked
from services.access_log import revealed
from services.event_store import CrmApplication
from services.states_as_of import AggregatesAsOf

A = TypeVar("A", bound=Aggregate)
Judged = tuple[DomainEvent, FieldAccess]


@dataclass(frozen=True)
class PastReads:
    """One caller's reads of the past, in the event store `app` (opened with `keyring`),
    as the access model `access` lets `principal` see it."""

    app: CrmApplication
    keyring: Keyring
    access: AccessModel
    principal: Principal

    def events(
        self, now: Aggregate, fields: FieldAccess, stored: Iterable[DomainEvent]
    ) -> Iterator[Judged]:
        """The events `stored` (sealed, of the aggregate `now`, oldest first), each with
        the caller's field access to it, the fields it shows opened and the others left
        sealed (to be masked). `fields` is theirs to the aggregate now (`AccessModel.read`);
        when their access follows its state, each event is judged by the state it left too."""
        access, principal = self.access, self.principal
        judged: Iterator[Judged] = ((event, fields) for event in stored)
        if access.fields_follow_state(principal, now.aggregate_type):
            states, current = AggregatesAsOf(self.app), resource_of(now)
            judged = (
                (event, access.past_fields(principal, resource_of(states.after(event)), current))
                for event in stored
            )
        for event, seen in judged:
            yield codec.unseal(event, self.keyring, unmasked(event.personal_fields, seen)), seen

    def state(self, now: A, instant: datetime) -> tuple[A, FieldAccess]:
        """The aggregate `now` as it was at `instant` (opened: `CrmApplication.as_of`),
        with the caller's field access to it: each field hidden then or now."""
        then = self.app.as_of(type(now), now.id, instant)
        return then, self.access.past_fields(self.principal, resource_of(then), resource_of(now))


def shown_in_events(judged: Iterable[Judged]) -> dict[UUID, set[str]]:
    """Customer -> the personal fields the judged events show them with a value."""
    shown: dict[UUID, set[str]] = {}
    for event, seen in judged:
        paths = revealed(event, event.personal_fields, seen)
        shown.setdefault(event.data_subject, set()).update(paths)
    return shown


def shown_in_state(state: Aggregate, fields: FieldAccess) -> dict[UUID, list[str]]:
    """Customer -> the personal fields an (opened) aggregate shows with a value."""
    subject = state.customer_id if isinstance(state, Conversation | Task) else state.id
    if subject is None:
        return {}
    return {subject: revealed(state, type(state).personal_fields, fields)}
