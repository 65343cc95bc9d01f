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
from domain.base import Aggregate, DomainEvent, NotFound
from domain.conversation import Conversation
from domain.task import Task
from services.access.fields import FieldAccess, unmasked
from services.access.model import AccessModel
from services.access.resources import resource_of
from services.access.rules import Principal
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
        """The events `stored` (sealed, of the aggregate `now`, oldest first) the caller
        may see, each with their field access to it, the fields it shows opened and the
        others left sealed (to be masked). `fields` is theirs to the aggregate now
        (`AccessModel.read`); when their view of the past can depend on the state each
        event left, each is judged by it too (`AccessModel.past_event`): an event that
        left a state they could not read (before a customer was shared with their
        department...) is left out."""
        access, principal, current = self.access, self.principal, resource_of(now)
        states = None
        if access.past_depends_on_state(principal, now.aggregate_type):
            states = AggregatesAsOf(self.app)
        for event in stored:
            if states is not None:
                then = resource_of(states.after(event))
                seen = access.past_event(principal, then, lambda: current)
            else:
                seen = fields
            if seen is not None:
                yield codec.unseal(event, self.keyring, unmasked(event.personal_fields, seen)), seen

    def state(self, now: A, instant: datetime) -> tuple[A, FieldAccess]:
        """The aggregate `now` as it was at `instant` (opened: `CrmApplication.as_of`),
        with the caller's field access to it (`AccessModel.past_event`): `NotFound` if
        they could not read it then, as if it did not exist yet."""
        then = self.app.as_of(type(now), now.id, instant)
        seen = self.access.past_event(self.principal, resource_of(then), lambda: resource_of(now))
        if seen is None:
            raise NotFound(now.aggregate_type, now.id)
        return then, seen


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
