"""The per-customer timeline of the shared read model (see `projections.shared`).

Every conversation and task event becomes one entry. Its personal text (message
content, subject, note, comment...) goes to `content`, which erasure blanks; its
other fields are summarised in `detail` as `name=value` pairs. Messages and notes
are keyed by message id so a correction rewrites the entry and a retraction
removes it; every other entry is keyed by `<aggregate id>/<version>`.
"""

from __future__ import annotations

from functools import cache
from typing import Any

from msgspec import UNSET

from domain import conversation as conv
from domain import task as tk
from domain.base import DomainEvent
from projections.base import Change, Delete, Key, Rows, Upsert
from projections.dispatch import DispatchProjection, changed, no_rows

_METADATA = frozenset(
    {"originator_id", "originator_version", "occurred_at", "actor", "actor_department",
     "correlation_id", "causation_id", "customer_id", "author", "message_id"}
)  # fmt: skip
_MESSAGES = (conv.MessageLogged, conv.InternalNoteAdded)
_EDITS = (conv.MessageCorrected, conv.MessageRetracted)


@cache
def _detail_fields(cls: type[DomainEvent]) -> tuple[str, ...]:
    personal = set(cls.personal_fields)
    return tuple(f for f in cls.__struct_fields__ if f not in _METADATA and f not in personal)


def entry_id(e: Any) -> str:
    if isinstance(e, _MESSAGES + _EDITS):
        return f"{e.originator_id}/m/{e.message_id}"
    return f"{e.originator_id}/{e.originator_version}"


def _keys(e: Any) -> list[Key]:
    return [("timeline", (e.customer_id, entry_id(e)))]


def _entry(e: Any) -> dict[str, Any]:
    details = ((f, getattr(e, f)) for f in _detail_fields(e.__class__))
    texts = [v for f in e.personal_fields if isinstance(v := getattr(e, f), str) and f != "author"]
    return {
        "customer_id": e.customer_id, "entry_id": entry_id(e), "occurred_at": e.occurred_at,
        "aggregate_type": e.aggregate_type, "aggregate_id": e.originator_id,
        "aggregate_version": e.originator_version, "event_type": e.wire_name(),
        "actor": e.actor, "actor_department": e.actor_department,
        "detail": " ".join(f"{f}={v}" for f, v in details if v is not None and v is not UNSET),
        "author": getattr(e, "author", None), "content": "\n".join(texts) or None,
        "corrected": False,
    }  # fmt: skip


def _add(e: Any, rows: Rows) -> list[Change]:
    return [Upsert("timeline", _entry(e))]


def _corrected(e: conv.MessageCorrected, rows: Rows) -> list[Change]:
    row = rows.get("timeline", (e.customer_id, entry_id(e)))
    return (
        [] if row is None else [Upsert("timeline", changed(row, content=e.content, corrected=True))]
    )


def _retracted(e: conv.MessageRetracted, rows: Rows) -> list[Change]:
    return [Delete("timeline", (e.customer_id, entry_id(e)))]


def register_timeline(projection: DispatchProjection) -> None:
    """Add the timeline handlers to `projection` (the shared read model)."""
    add_types = [
        t
        for t in (*conv.ConversationEvent.__subclasses__(), *tk.TaskEvent.__subclasses__())
        if t not in _EDITS
    ]
    projection.on(*add_types, keys=no_rows)(_add)  # a new entry needs nothing loaded
    projection.on(conv.MessageCorrected, keys=_keys)(_corrected)
    projection.on(conv.MessageRetracted, keys=_keys)(_retracted)
