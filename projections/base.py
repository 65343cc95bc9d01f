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
  (archive, erasure) that touch rows the batch did not load.

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
    """One read-model table. `subject` names the customer-id column used by erasure."""

    name: str
    columns: tuple[Column, ...]
    key: tuple[str, ...]
    subject: str | None = None
    personal: tuple[str, ...] = ()
    indexes: tuple[tuple[str, ...], ...] = ()

    @cached_property
    def column_names(self) -> tuple[str, ...]:
        return tuple(column.name for column in self.columns)

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


class Upsert(NamedTuple):
    table: str
    row: Row


class Delete(NamedTuple):
    table: str
    key: KeyValues


class Increment(NamedTuple):
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


class Projection(Protocol):
    """What the runner needs from a projection. `version` changes when its logic does.

    `personal_inputs` names the personal event fields `apply` reads: the runner opens
    only those (decryption is a large part of a replay's cost); the others reach
    `apply` still sealed.
    """

    name: str
    version: int
    tables: tuple[Table, ...]
    personal_inputs: frozenset[str]

    def keys(self, event: DomainEvent) -> Iterable[Key]: ...

    def apply(self, event: DomainEvent, rows: Rows) -> list[Change]: ...


@dataclass
class Segment:
    """Net effect of consecutive row changes, closed by at most one set operation."""

    rows: dict[Key, Row | None] = field(default_factory=dict)
    counters: dict[Key, tuple[Row, dict[str, Number]]] = field(default_factory=dict)
    closing: list[SetOperation] = field(default_factory=list)


class Batch:
    """In-memory overlay over the loaded rows; folds changes into write segments."""

    def __init__(self, tables: Iterable[Table], loaded: dict[Key, Row]) -> None:
        self.tables = {t.name: t for t in tables}
        self._rows: dict[Key, Row | None] = dict(loaded)
        self.segments: list[Segment] = [Segment()]
        self._pending: dict[tuple[str, str], dict[Any, set[str]]] = {}
        """Set operations of the open segment: (table, column) -> value -> kinds."""
        self._by_customer: dict[Any, set[Key]] = {}
        for key, row in loaded.items():
            self._index(key, row)

    def _index(self, key: Key, row: Row | None) -> None:
        """Rows by `customer_id`, so archive/erasure never scan the whole batch."""
        if row is not None and (customer := row.get(CUSTOMER)) is not None:
            self._by_customer.setdefault(customer, set()).add(key)

    def get(self, table: str, key: KeyValues) -> Row | None:
        return self._rows.get((table, key))

    def record(self, changes: Iterable[Change]) -> None:
        for change in changes:
            if isinstance(change, Upsert):
                self._put((change.table, self.tables[change.table].key_of(change.row)), change.row)
            elif isinstance(change, Delete):
                self._put((change.table, change.key), None)
            elif isinstance(change, Increment):
                self._count(change)
            else:
                self._set_operation(change)

    def _put(self, key: Key, row: Row | None) -> None:
        self._after_set_operation(key[0], row)
        self._index(key, row)
        self._rows[key] = row
        self.segments[-1].rows[key] = row

    def _count(self, change: Increment) -> None:
        key = (change.table, self.tables[change.table].key_of(change.key_row))
        self._after_set_operation(change.table, change.key_row)
        counters = self.segments[-1].counters
        if key not in counters:
            counters[key] = (change.key_row, dict(change.deltas))
            return
        totals = counters[key][1]
        for name, delta in change.deltas.items():
            totals[name] = totals.get(name, 0) + delta  # type: ignore[operator]  # one type per column

    def _set_operation(self, change: SetOperation) -> None:
        spec = self.tables[change.table]
        for key, row in list(self._matching(spec, change)):
            new = None if isinstance(change, DeleteWhere) else scrubbed(spec, row)
            self._rows[key] = new
            self.segments[-1].rows[key] = new
        self.segments[-1].closing.append(change)
        column = change.column if isinstance(change, DeleteWhere) else spec.subject
        kind = "scrub" if isinstance(change, Scrub) else "delete"
        matching = self._pending.setdefault((change.table, column or ""), {})
        matching.setdefault(_value(change), set()).add(kind)

    def _after_set_operation(self, table: str, row: Row | None) -> None:
        """Open a new segment if this row matches a set operation still to run."""
        if not self._pending or row is None:
            return
        kinds: set[str] = set()
        for (name, column), values in self._pending.items():
            if name == table:
                kinds.update(values.get(row.get(column), ()))
        if not kinds or (kinds == {"scrub"} and scrubbed(self.tables[table], row) == row):
            return  # no match, or already blank: the scrub after it changes nothing
        self.segments.append(Segment())
        self._pending = {}

    def _matching(self, spec: Table, change: SetOperation) -> Iterator[tuple[Key, Row]]:
        column, value = (
            (change.column, change.value)
            if isinstance(change, DeleteWhere)
            else (spec.subject, change.subject)
        )
        keys = self._by_customer.get(value, ()) if column == CUSTOMER else list(self._rows)
        for key in sorted(keys, key=repr):
            row = self._rows.get(key)
            if key[0] == spec.name and row is not None and row.get(column or "") == value:
                yield key, row


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


def erase_everywhere(tables: Iterable[Table], subject: Any) -> list[Change]:
    """Scrub every table that holds the subject's personal data (right to be forgotten)."""
    return [Scrub(t.name, subject) for t in tables if t.subject and t.personal]
