"""The per-customer timeline of the shared read model (see `projections.shared`).

Every conversation and task event becomes one entry. Its personal text (message
content, subject, note, comment...) goes to `content`, which erasure blanks; its
other fields are summarised in `detail` as `name=value` pairs. Messages and notes
are keyed by message id so a correction rewrites the entry and a retraction
removes it; every other entry is keyed by `<aggregate id>/<version>`.

A replay builds an entry for most events, so what an entry needs of its event class
(field names, wire name, which id keys it) is worked out once per class (`_Shape`), and
UUIDs and UTC times are turned into text by msgspec, in C: `str()` of a UUID runs about
7,000 instructions of Python and of a datetime 12,000, more than the rest of an entry.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from operator import attrgetter
from typing import Any
from uuid import UUID

from msgspec import UNSET, to_builtins

from domain import conversation as conv
from domain import task as tk
from domain.base import DomainEvent
from projections.base import Change, Delete, Key, Rows, Upsert
from projections.dispatch import Applier, DispatchProjection, changed, no_rows

_METADATA = frozenset(
    {"originator_id", "originator_version", "occurred_at", "actor", "actor_department",
     "correlation_id", "causation_id", "idempotency_key", "customer_id", "author",
     "message_id"}
)  # fmt: skip
_MESSAGES = (conv.MessageLogged, conv.InternalNoteAdded)
_EDITS = (conv.MessageCorrected, conv.MessageRetracted)


_uuid_text: Callable[[UUID], str] = to_builtins
"""`str(uuid)` (msgspec's canonical form is the same text)."""


def _datetime_text(value: datetime) -> str:
    """`str(value)`: for UTC (every event's times) from msgspec's RFC 3339 text."""
    if value.tzinfo is not UTC:
        return str(value)
    text: str = to_builtins(value)  # 2024-05-31T12:00:00[.ffffff]Z
    return f"{text[:10]} {text[11:-1]}+00:00"


_TEXT: dict[type, Callable[[Any], str]] = {UUID: _uuid_text, datetime: _datetime_text}
"""How `detail` writes a value of these types; `format` (as an f-string does) the rest."""


def _message_entry_id(e: Any) -> str:
    return f"{_uuid_text(e.originator_id)}/m/{e.message_id}"


def _version_entry_id(e: Any) -> str:
    return f"{_uuid_text(e.originator_id)}/{e.originator_version}"


def _values(names: tuple[str, ...]) -> Callable[[Any], tuple[Any, ...]]:
    """The named attributes of an object, always as a tuple (`attrgetter`, built in C,
    gives a bare value for one name and cannot take none)."""
    if len(names) > 1:
        return attrgetter(*names)
    if names:
        (name,) = names
        return lambda e: (getattr(e, name),)
    return lambda e: ()


@dataclass(frozen=True)
class _Shape:
    """What an entry needs of one event class: its fields split into `detail` and
    `content`, its wire name and how its entry id is made."""

    event_type: str
    aggregate_type: str
    detail_names: tuple[str, ...]
    detail_values: Callable[[Any], tuple[Any, ...]]
    text_values: Callable[[Any], tuple[Any, ...]]
    has_author: bool
    entry_id: Callable[[Any], str]

    @classmethod
    def of(cls, event_type: type[DomainEvent]) -> _Shape:
        personal = event_type.personal_fields
        details = tuple(
            f for f in event_type.__struct_fields__ if f not in _METADATA and f not in personal
        )
        texts = tuple(f for f in personal if f != "author")
        by_message = issubclass(event_type, _MESSAGES + _EDITS)
        return cls(
            event_type=event_type.wire_name(),
            aggregate_type=event_type.aggregate_type,
            detail_names=details,
            detail_values=_values(details),
            text_values=_values(texts),
            has_author="author" in event_type.__struct_fields__,
            entry_id=_message_entry_id if by_message else _version_entry_id,
        )

    def detail(self, e: Any) -> str:
        pairs = zip(self.detail_names, self.detail_values(e), strict=True)
        return " ".join(
            [
                f"{f}={_TEXT.get(type(v), format)(v)}"
                for f, v in pairs
                if v is not None and v is not UNSET
            ]
        )

    def entry(self, e: Any) -> dict[str, Any]:
        texts = [v for v in self.text_values(e) if isinstance(v, str)]
        return {
            "customer_id": e.customer_id, "entry_id": self.entry_id(e),
            "occurred_at": e.occurred_at, "aggregate_type": self.aggregate_type,
            "aggregate_id": e.originator_id, "aggregate_version": e.originator_version,
            "event_type": self.event_type, "actor": e.actor,
            "actor_department": e.actor_department, "detail": self.detail(e),
            "author": e.author if self.has_author else None,
            "content": "\n".join(texts) or None, "corrected": False,
        }  # fmt: skip


def _keys(e: Any) -> list[Key]:
    return [("timeline", (e.customer_id, _message_entry_id(e)))]


_HANDLING_DEPARTMENT = {
    conv.ConversationOpened: "department",
    conv.ConversationHandedOff: "to_department",
    tk.TaskCreated: "department",
    tk.TaskAssigned: "department",
}
"""The events that set a conversation's or task's handling department, and the field."""


def _adder(event_type: type[DomainEvent]) -> Applier:
    """The applier adding `event_type`'s entry, its `_Shape` worked out here, once; events
    that move their aggregate to a department also record it in `work_items`."""
    shape = _Shape.of(event_type)
    moves = _HANDLING_DEPARTMENT.get(event_type, "")

    def add(e: Any, rows: Rows) -> list[Change]:
        return [Upsert("timeline", shape.entry(e))]

    def add_and_move(e: Any, rows: Rows) -> list[Change]:
        item = {
            "aggregate_id": e.originator_id,
            "aggregate_type": shape.aggregate_type,
            "department": getattr(e, moves),
        }
        return [Upsert("timeline", shape.entry(e)), Upsert("work_items", item)]

    return add_and_move if moves else add


def _corrected(e: conv.MessageCorrected, rows: Rows) -> list[Change]:
    row = rows.get("timeline", (e.customer_id, _message_entry_id(e)))
    return (
        [] if row is None else [Upsert("timeline", changed(row, content=e.content, corrected=True))]
    )


def _retracted(e: conv.MessageRetracted, rows: Rows) -> list[Change]:
    return [Delete("timeline", (e.customer_id, _message_entry_id(e)))]


def register_timeline(projection: DispatchProjection) -> None:
    """Add the timeline handlers to `projection` (the shared read model)."""
    for event_type in (*conv.ConversationEvent.__subclasses__(), *tk.TaskEvent.__subclasses__()):
        if event_type not in _EDITS:  # a new entry needs nothing loaded
            projection.on(event_type, keys=no_rows)(_adder(event_type))
    projection.on(conv.MessageCorrected, keys=_keys)(_corrected)
    projection.on(conv.MessageRetracted, keys=_keys)(_retracted)
