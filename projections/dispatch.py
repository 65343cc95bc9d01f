"""A table-driven `Projection`: per event class, which rows to load and how to apply.

Dispatch is one dict lookup on the event's class, which keeps replay fast; events a
projection does not care about cost a lookup and nothing else.

Erasure, whatever the order: in a projection with personal columns, every event class
that carries personal fields also loads its customer's erasure marker
(`projections.base.ERASED_TABLE`), and once the customer is erased the rows it writes
for them are blanked as the erasure's scrub blanked the rows it found. Read models keep
the events' sealed values, so without this a message consumed after its customer's
erasure would keep its ciphertext in one replay and read `[erased]` in another.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from operator import attrgetter
from typing import Any, TypeGuard
from uuid import UUID

from domain.base import DomainEvent
from projections.base import (
    ERASED_CUSTOMERS,
    ERASED_TABLE,
    Change,
    Fact,
    Key,
    Rows,
    Table,
    Upsert,
    scrubbed,
    table,
)

KeyRule = Callable[[Any], list[Key]]
Applier = Callable[[Any, Rows], list[Change]]


@dataclass
class DispatchProjection:
    """Implements `projections.base.Projection` from two dictionaries."""

    name: str
    version: int
    tables: tuple[Table, ...]
    key_rules: dict[type[Fact], KeyRule] = field(default_factory=dict)
    appliers: dict[type[Fact], Applier] = field(default_factory=dict)
    personal_inputs: frozenset[str] = frozenset()
    search_fields: frozenset[str] = frozenset()
    personal_tables: dict[str, Table] = field(init=False)
    """The tables with personal columns of a customer, which erasure blanks."""

    def __post_init__(self) -> None:
        self.personal_tables = {t.name: t for t in self.tables if t.subject and t.personal}
        if self.personal_tables and ERASED_TABLE not in self.tables:
            raise ValueError(f"projection {self.name} has personal columns: add ERASED_TABLE")

    def on(self, *event_types: type[Fact], keys: KeyRule) -> Callable[[Applier], Applier]:
        """Decorator: register `func` for `event_types`, loading the rows `keys` names
        (and, for events with personal fields, blanking what they write once erased)."""

        def register(func: Applier) -> Applier:
            for event_type in event_types:
                rule, applier = keys, func
                if _carries_personal_data(event_type) and self.personal_tables:
                    customer = _customer_getter(event_type)
                    rule = _erased_rule(keys, customer)
                    applier = _blanked_once_erased(func, customer, self.personal_tables)
                self.key_rules[event_type] = rule
                self.appliers[event_type] = applier
            return func

        return register

    def on_active(
        self, *event_types: type[DomainEvent], keys: KeyRule
    ) -> Callable[[Applier], Applier]:
        """Like `on`, but the event is ignored once its customer is archived.

        Events of different aggregates arrive in different orders on replay (Kafka
        orders per aggregate only). Archiving deletes a customer's rows; without this
        guard, a task event consumed after the archive would recreate them in one
        replay and not in another.
        """

        def register(func: Applier) -> Applier:
            for event_type in event_types:
                customer = _customer_getter(event_type)
                archived = _archived_rule(keys, customer)
                self.on(event_type, keys=archived)(_unless_archived(func, customer))
            return func

        return register

    def keys(self, event: Fact) -> Iterable[Key]:
        rule = self.key_rules.get(type(event))
        return () if rule is None else rule(event)

    def apply(self, event: Fact, rows: Rows) -> list[Change]:
        func = self.appliers.get(type(event))
        return [] if func is None else func(event, rows)

    def table(self, name: str) -> Table:
        return next(t for t in self.tables if t.name == name)


ARCHIVED = "_archived"
ARCHIVED_TABLE = table(ARCHIVED, ("customer_id",), "customer_id:uuid")
"""Customers archived so far: the working state behind `on_active`."""


def archive_marker(customer_id: UUID) -> Upsert:
    return Upsert(ARCHIVED, {"customer_id": customer_id})


def _customer_getter(event_type: type[DomainEvent]) -> Callable[[Any], UUID]:
    """`customer_of` for one event class, as a getter built in C (guards run per event)."""
    fields = event_type.__struct_fields__
    return attrgetter("customer_id" if "customer_id" in fields else "originator_id")


def _archived_rule(keys: KeyRule, customer: Callable[[Any], UUID]) -> KeyRule:
    """`keys` plus the archive marker of the event's customer (`on_active`)."""
    return lambda e: [*keys(e), (ARCHIVED, (customer(e),))]


def _unless_archived(func: Applier, customer: Callable[[Any], UUID]) -> Applier:
    """`func`, except that events of an archived customer change nothing (`on_active`)."""

    def guarded(event: Any, rows: Rows) -> list[Change]:
        if rows.get(ARCHIVED, (customer(event),)) is not None:
            return []
        return func(event, rows)

    return guarded


def _carries_personal_data(event_type: type[Fact]) -> TypeGuard[type[DomainEvent]]:
    return issubclass(event_type, DomainEvent) and bool(event_type.personal_fields)


def _erased_rule(keys: KeyRule, customer: Callable[[Any], UUID]) -> KeyRule:
    """`keys` plus the erasure marker of the event's customer."""
    return lambda e: [*keys(e), (ERASED_CUSTOMERS, (customer(e),))]


def _blanked_once_erased(
    func: Applier, customer: Callable[[Any], UUID], personal: dict[str, Table]
) -> Applier:
    """`func`, except that the customer's rows it writes after their erasure come blanked
    (`projections.base.scrubbed`), as the erasure's scrub left the rows it found."""

    def guarded(event: Any, rows: Rows) -> list[Change]:
        changes = func(event, rows)
        subject = customer(event)
        if rows.get(ERASED_CUSTOMERS, (subject,)) is None:
            return changes
        return [_blanked(change, personal, subject) for change in changes]

    return guarded


def _blanked(change: Change, personal: dict[str, Table], subject: UUID) -> Change:
    if not isinstance(change, Upsert) or (spec := personal.get(change.table)) is None:
        return change
    if change.row.get(spec.subject or "") != subject:
        return change
    return Upsert(change.table, scrubbed(spec, change.row))


def by_customer(table: str) -> KeyRule:
    """Key rule: the row of `table` keyed by the event's customer."""
    return lambda e: [(table, (customer_of(e),))]


def by_aggregate(table: str, *more: str) -> KeyRule:
    """Key rule: the row of `table` keyed by the event's aggregate (+ its customer's rows)."""
    if not more:
        return lambda e: [(table, (e.originator_id,))]

    def rule(e: Any) -> list[Key]:
        customer = (customer_of(e),)
        return [(table, (e.originator_id,)), *[(t, customer) for t in more]]

    return rule


def no_rows(event: Any) -> list[Key]:
    return []


def customer_of(event: Any) -> UUID:
    customer: UUID = getattr(event, "customer_id", event.originator_id)
    return customer


def changed(row: dict[str, Any], **values: Any) -> dict[str, Any]:
    """A copy of `row` with `values` replaced (rows are never mutated in place)."""
    return {**row, **values}
