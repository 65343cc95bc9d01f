"""The projection protocol: a declarative schema plus a pure `apply(event, rows)`.

A projection never does I/O. It declares its tables once (`Table`: columns with
types, primary key, which column names the data subject and which columns hold
personal data); the store adapters turn that into DDL. Per event it names the rows
it needs (`keys`), so the runner can load every row a whole batch touches in one
query per table, and `apply` returns changes instead of writing:

* `Upsert(table, row)`: the full new row (replaces the old one);
* `Delete(table, key)`;
* `Increment(table, key_row, deltas)`: add to counters without reading them first
  (statistics), so counters never need to be loaded;
* `DeleteWhere(table, column, value)` / `Scrub(table, subject)`: rare set operations
  (archive, erasure) that touch rows the batch did not load; an erasure also leaves a
  marker (`ERASED_TABLE`) so the rows later events write for the customer come blanked.

`Batch` (also pure) is the in-memory overlay the runner applies a batch through: it
answers `get` from loaded rows plus earlier changes in the same batch and folds the
changes into a `WritePlan`: the net rows to write, merged counters, and the set
operations in order. Set operations run after their segment's row writes (the overlay
already applied them to those rows); a later change to a row a pending set operation
would match opens a new segment, so SQL order never contradicts event order while the
common batch (archive/erasure with no later change to the same customer) stays one
segment.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from decimal import Decimal
from functools import cached_property
from operator import itemgetter
from typing import Any, Literal, NamedTuple, Protocol, cast
from uuid import UUID

import msgspec

from domain import codec
from domain.base import ERASED, DomainEvent

ColumnType = Literal["text", "int", "bigint", "bool", "float", "numeric", "uuid", "timestamp"]
Row = dict[str, Any]
Number = int | float | Decimal
KeyValues = tuple[Any, ...]
CUSTOMER = "customer_id"
Key = tuple[str, KeyValues]
"""(table name, primary-key values in the table's key order)."""


@dataclass(frozen=True)
class Column:
    name: str
    type: ColumnType


@dataclass(frozen=True)
class Table:
    """One read-model table. `subject` names the customer-id column used by erasure;
    `personal` its columns that hold personal data, stored sealed; `analysts` False keeps
    its view from the analysts' SQL role (a blind index shows which rows share a value)."""

    name: str
    columns: tuple[Column, ...]
    key: tuple[str, ...]
    subject: str | None = None
    personal: tuple[str, ...] = ()
    indexes: tuple[tuple[str, ...], ...] = ()
    analysts: bool = True

    @cached_property
    def column_names(self) -> tuple[str, ...]:
        return tuple(column.name for column in self.columns)

    @cached_property
    def value_columns(self) -> tuple[str, ...]:
        """The columns outside the primary key (the counters of a counter table)."""
        return tuple(name for name in self.column_names if name not in self.key)

    @cached_property
    def key_of(self) -> Callable[[Row], KeyValues]:
        """The primary-key values of a row, as a tuple (called per change in a replay)."""
        if len(self.key) == 1:
            (name,) = self.key
            return lambda row: (row[name],)
        return itemgetter(*self.key)


def table(name: str, key: tuple[str, ...], columns: str, **options: Any) -> Table:
    """A table from a compact `"name:type name:type ..."` column list."""
    pairs = (item.split(":") for item in columns.split())
    parsed = tuple(Column(name, cast(ColumnType, kind)) for name, kind in pairs)
    return Table(name, parsed, key, **options)


class Upsert(msgspec.Struct, frozen=True, gc=False):
    """Row changes are msgspec Structs: built in C, at a quarter of a NamedTuple's cost (a
    replay makes one or more per event); `gc=False` as a change is never in a cycle. The
    rare set operations stay NamedTuples: sessions test them with `isinstance`, which is
    slow to answer no for a Struct class (its metaclass is not `type`)."""

    table: str
    row: Row


class Delete(msgspec.Struct, frozen=True, gc=False):
    table: str
    key: KeyValues


class Increment(msgspec.Struct, frozen=True, gc=False):
    table: str
    key_row: Row
    deltas: dict[str, Number]


class DeleteWhere(NamedTuple):
    table: str
    column: str
    value: Any


class Scrub(NamedTuple):
    """Blank the personal columns (non-null ones become ERASED) of a subject's rows."""

    table: str
    subject: Any


Change = Upsert | Delete | Increment | DeleteWhere | Scrub
SetOperation = DeleteWhere | Scrub


class Rows(Protocol):
    def get(self, table: str, key: KeyValues) -> Row | None: ...


class SearchTerms(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    """What a consumer derived from one customer event for search: per field, the
    blind-index terms of its new value (an empty list: the field was cleared or can no
    longer be read); fields absent did not change. Never in the event log or on Kafka:
    the consumer computes it from the opened value and the search key (see
    `consumers.blind_index`), and the runner applies it right after its event."""

    customer_id: UUID
    terms: dict[str, list[str]]


Fact = DomainEvent | SearchTerms
"""What `apply` receives: an event, or the search terms a consumer derived from one."""


class Projection(Protocol):
    """What the runner needs from a projection. `version` changes when its logic does.

    Read models store personal fields as they arrive, sealed: `personal_inputs` names
    the personal event fields the runner must open before `apply` (none, in every
    projection: the API opens them at read time for callers allowed to see them).
    `search_fields` names the customer fields whose `SearchTerms` the projection
    receives after each event that sets them.
    """

    name: str
    version: int
    tables: tuple[Table, ...]
    personal_inputs: frozenset[str]
    search_fields: frozenset[str]

    def keys(self, event: Fact) -> Iterable[Key]: ...

    def apply(self, event: Fact, rows: Rows) -> list[Change]: ...


@dataclass
class Segment:
    """Net effect of consecutive row changes, closed by at most one set operation."""

    rows: dict[Key, Row | None] = field(default_factory=dict)
    counters: dict[Key, tuple[Row, dict[str, Number]]] = field(default_factory=dict)
    closing: list[SetOperation] = field(default_factory=list)


class Batch:
    """In-memory overlay over the loaded rows; folds changes into write segments.

    `record` runs for every event of a replay, so its common path (an upsert to a table
    no pending set operation touches) stays in `record` itself: two dict writes and one
    index append.
    """

    def __init__(self, tables: Iterable[Table], loaded: dict[Key, Row]) -> None:
        self.tables = {t.name: t for t in tables}
        self._key_of = {name: spec.key_of for name, spec in self.tables.items()}
        self._rows: dict[Key, Row | None] = dict(loaded)
        self.segments: list[Segment] = [Segment()]
        self._open = self.segments[-1]
        self._pending: dict[str, dict[str, dict[Any, set[str]]]] = {}
        """Set operations of the open segment: table -> column -> value -> kinds. By
        table first: most changes go to a table no pending operation touches."""
        self._by_customer: dict[Any, list[Key]] = {}
        """Keys of rows by `customer_id` (`_hashable`), so archive/erasure never scan the
        whole batch. A list, not a set: appending never hashes the key; `_matching` drops
        repeats and keys whose row has since changed."""
        for key, row in loaded.items():
            if (customer := row.get(CUSTOMER)) is not None:
                self._by_customer.setdefault(_hashable(customer), []).append(key)

    def get(self, table: str, key: KeyValues) -> Row | None:
        return self._rows.get((table, key))

    def record(self, changes: Iterable[Change]) -> None:
        for change in changes:
            # type(), not isinstance(): a miss against a Struct class costs ~1,000 instructions
            if type(change) is Upsert:
                name, row = change.table, change.row
                key = (name, self._key_of[name](row))
                if name in self._pending:
                    self._after_set_operation(name, row)
                if (customer := row.get(CUSTOMER)) is not None:
                    self._by_customer.setdefault(_hashable(customer), []).append(key)
                self._rows[key] = row
                self._open.rows[key] = row
            elif type(change) is Delete:
                key = (change.table, change.key)
                self._rows[key] = None
                self._open.rows[key] = None
            elif type(change) is Increment:
                self._count(change)
            else:
                self._set_operation(cast(SetOperation, change))  # the rest of `Change`

    def _count(self, change: Increment) -> None:
        name, key_row, deltas = change.table, change.key_row, change.deltas
        key = (name, self._key_of[name](key_row))
        if name in self._pending:
            self._after_set_operation(name, key_row)
        counters = self._open.counters
        if key not in counters:
            counters[key] = (key_row, dict(deltas))
            return
        totals = counters[key][1]
        for column, delta in deltas.items():
            totals[column] = totals.get(column, 0) + delta  # type: ignore[operator]  # one type per column

    def _set_operation(self, change: SetOperation) -> None:
        spec = self.tables[change.table]
        for key, row in list(self._matching(spec, change)):
            new = None if isinstance(change, DeleteWhere) else scrubbed(spec, row)
            self._rows[key] = new
            self._open.rows[key] = new
        self._open.closing.append(change)
        column = change.column if isinstance(change, DeleteWhere) else spec.subject
        kind = "scrub" if isinstance(change, Scrub) else "delete"
        matching = self._pending.setdefault(change.table, {}).setdefault(column or "", {})
        matching.setdefault(_hashable(_value(change)), set()).add(kind)

    def _after_set_operation(self, table: str, row: Row) -> None:
        """Open a new segment if this row matches a set operation still to run."""
        kinds: set[str] = set()
        for column, values in self._pending[table].items():
            if (found := values.get(_hashable(row.get(column)))) is not None:
                kinds |= found
        if not kinds or (kinds == {"scrub"} and scrubbed(self.tables[table], row) == row):
            return  # no match, or already blank: the scrub after it changes nothing
        self._open = Segment()
        self.segments.append(self._open)
        self._pending = {}

    def _matching(self, spec: Table, change: SetOperation) -> Iterator[tuple[Key, Row]]:
        column, value = (
            (change.column, change.value)
            if isinstance(change, DeleteWhere)
            else (spec.subject, change.subject)
        )
        if column == CUSTOMER:
            keys: Iterable[Key] = set(self._by_customer.get(_hashable(value), ()))
        else:
            keys = list(self._rows)
        for key in sorted(keys, key=repr):
            row = self._rows.get(key)
            if key[0] == spec.name and row is not None and row.get(column or "") == value:
                yield key, row


def _hashable(value: Any) -> Any:
    """What the batch's own indexes key `value` by: a UUID's int, as a UUID hashes in
    Python (about a thousand instructions) and an int in C. Only a lookup key: matches
    are checked against the values themselves."""
    return value.int if type(value) is UUID else value


def _value(change: SetOperation) -> Any:
    return change.value if isinstance(change, DeleteWhere) else change.subject


def scrubbed(spec: Table, row: Row) -> Row:
    """The row with its personal columns erased (NULL stays NULL, as a rebuild gives)."""
    return {
        name: (ERASED if name in spec.personal and value is not None else value)
        for name, value in row.items()
    }


def every_personal_field() -> frozenset[str]:
    """`personal_inputs` of a projection that reads every personal field of every event."""
    return frozenset(f for cls in codec.event_types().values() for f in cls.personal_fields)


ERASED_CUSTOMERS = "_erased"
ERASED_TABLE = table(ERASED_CUSTOMERS, ("customer_id",), "customer_id:uuid")
"""Customers erased so far, in every projection with personal columns. A scrub blanks
only the rows that exist when the erasure is applied; Kafka orders events per aggregate
only, so a conversation's or task's event may come after its customer's erasure in one
replay and before it in another. Its rows then come blanked too (see
`projections.dispatch`), and the rows never depend on that order."""


def erase_everywhere(tables: Iterable[Table], subject: Any) -> list[Change]:
    """Scrub every table that holds the subject's personal data (right to be forgotten),
    and remember the erasure in `ERASED_TABLE` for the rows later events write."""
    scrubs: list[Change] = [Scrub(t.name, subject) for t in tables if t.subject and t.personal]
    return [*scrubs, Upsert(ERASED_CUSTOMERS, {CUSTOMER: subject})] if scrubs else []
