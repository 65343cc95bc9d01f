"""What every aggregate and every event shares: metadata, versioning, errors.

Pure: no I/O, no clock. The time of a change arrives in the `Context` a command
carries, so deciding is deterministic and replay gives the same state.

The classes satisfy the protocols the `eventsourcing` library relies on: an event
has `originator_id`, `originator_version`, `timestamp` and `mutate(aggregate)`; an
aggregate has `id`, `version` and `collect_events()`.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from datetime import datetime
from typing import Annotated, Any, ClassVar, Generic, Self, TypeVar
from uuid import UUID

import msgspec
from msgspec import UNSET, UnsetType

AwareDatetime = Annotated[datetime, msgspec.Meta(tz=True)]
"""A datetime that must carry a zone: decoding rejects naive times, schemas say date-time."""

IdempotencyKey = Annotated[
    str,
    msgspec.Meta(
        description="a keyed digest (hmac: and 32 hex digits) of the actor and the"
        " Idempotency-Key of the request that caused the event, never the key (absent when"
        " it had none); events stored before digests hold the key as sent"
    ),
]
CorrelationId = Annotated[
    str,
    msgspec.Meta(
        description="the id of the request that caused the event: the client's X-Request-Id"
        " when it was an opaque id (a UUID or 16-64 hex digits, not decimal digits alone),"
        " else one the API made;"
        " events stored before that rule hold the header's first 100 characters as sent"
    ),
]

HELD_BASE = 1_536
"""About the bytes of memory an aggregate's fixed state holds, its short values
included (`Aggregate.held_bytes`)."""
HELD_ENTRY = 640
"""About the bytes of one entry of a growing collection (a message, an order), its text
aside."""
SHORT_TEXT = 64
"""Text up to this many characters is part of a fixed state's `HELD_BASE`; longer text
(a description, a sealed name) is counted as it is held (`sys.getsizeof`: 49 bytes and
one a character for ASCII, such as a sealed value; 76 and four a character for astral
text)."""


_CONTAINERS = (dict, set, list)
"""The kinds of an aggregate's attributes `Aggregate.clone` copies (their items never
change)."""

ERASED = "[erased]"
"""What a personal field reads as once its customer's key has been destroyed."""
MASKED = "[masked]"
"""What a field reads as to a caller whose role may not see it (`services.access`)."""
MARKERS = frozenset({ERASED, MASKED})
"""Values that stand for a field's absence: no text a command carries may be one."""


class DomainError(Exception):
    """A command broke a business rule. The message says which, for a human."""

    code: ClassVar[str] = "domain-rule-violated"


class ValidationFailed(DomainError):  # noqa: N818 - public name others import
    """A command carried a value that is not acceptable (bad email, CSAT of 7...)."""

    code = "validation-failed"

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.reason = message  # without the field: for a caller that names it its own way


class InvalidTransition(DomainError):  # noqa: N818 - public name others import
    """The aggregate's current status does not allow this operation."""

    code = "invalid-transition"


class AggregateFullError(InvalidTransition):
    """The aggregate holds `max_events` events, the most one of its kind may: each read of
    it (and each command once the commands' cache dropped it) replays them all, so one
    client closing and reopening a conversation, or logging a task's progress, in a loop
    could otherwise make every read of it cost seconds. The work goes on in a new one."""


class PermissionDenied(DomainError):  # noqa: N818 - public name others import
    """The acting principal may not do this (e.g. evaluating one's own task)."""

    code = "not-allowed"


class VersionConflict(DomainError):  # noqa: N818 - public name others import
    """The aggregate changed since the caller read it (optimistic concurrency)."""

    code = "version-conflict"

    def __init__(self, aggregate_id: UUID, expected: int, actual: int) -> None:
        super().__init__(f"aggregate {aggregate_id} is at version {actual}, expected {expected}")
        self.aggregate_id = aggregate_id
        self.expected = expected
        self.actual = actual


class NotFound(DomainError):  # noqa: N818 - public name others import
    """No aggregate with that id exists (or none existed at that instant)."""

    code = "not-found"

    def __init__(self, kind: str, aggregate_id: UUID | str) -> None:
        super().__init__(f"{kind} {aggregate_id} not found")
        self.kind = kind
        self.aggregate_id = aggregate_id


class Context(msgspec.Struct, frozen=True, kw_only=True):
    """Who acts, why and when: copied into the metadata of every event a command emits.

    `idempotency_key`: a keyed digest of the Idempotency-Key the command ran under, if
    any (`services.idempotency.Idempotency.event_key`), so that a retry can tell from the
    event store whether an attempt whose process died committed. Metadata is kept for
    good, unsealed, where no erasure reaches: neither it nor `correlation_id` is ever a
    value a client wrote freely (`validation.request_id`).
    """

    actor: str
    actor_department: str
    occurred_at: datetime
    correlation_id: str
    causation_id: str | None = None
    idempotency_key: str | None = None


class DomainEvent(msgspec.Struct, frozen=True, kw_only=True, tag_field="type"):
    """Base of every event. Subclasses are past-tense, set `tag=` to their wire name,
    and declare `aggregate_type` ('customer' | 'conversation' | 'task').

    `personal_fields` names the fields holding personal data: the codec encrypts them
    with the data subject's key, so erasing the key erases them everywhere.

    `idempotency_key` (a keyed digest of the request's Idempotency-Key and its `actor`;
    the key as sent in events stored before digests) is UNSET, and so absent from the
    stored JSON, for a command sent without one: events stored before the field existed
    and events without a key encode byte for byte alike.
    """

    originator_id: UUID
    originator_version: int
    occurred_at: AwareDatetime
    actor: str
    actor_department: str
    correlation_id: CorrelationId
    causation_id: str | None = None
    idempotency_key: IdempotencyKey | UnsetType = UNSET

    aggregate_type: ClassVar[str] = ""
    class_version: ClassVar[int] = 1
    personal_fields: ClassVar[tuple[str, ...]] = ()

    @property
    def timestamp(self) -> datetime:
        """The name eventsourcing uses for when the event happened."""
        return self.occurred_at

    @property
    def data_subject(self) -> UUID:
        """Whose personal data this event holds: its customer (whose key encrypts it)."""
        customer_id = getattr(self, "customer_id", None)
        return customer_id if isinstance(customer_id, UUID) else self.originator_id

    @classmethod
    def wire_name(cls) -> str:
        """The stable `type` tag: the event's name on Kafka and in the store."""
        tag = cls.__struct_config__.tag
        assert isinstance(tag, str), f"{cls.__name__} needs an explicit tag"
        return tag

    def mutate(self, aggregate: Aggregate | None) -> Aggregate:
        """Apply this event to an aggregate (None for the creating event)."""
        if aggregate is None:
            aggregate = AGGREGATE_CLASSES[self.aggregate_type].blank(self.originator_id)
        aggregate.apply(self)
        aggregate.version = self.originator_version
        if aggregate.created_on is None:
            aggregate.created_on = self.occurred_at
        aggregate.modified_on = self.occurred_at
        return aggregate


AGGREGATE_CLASSES: dict[str, type[Aggregate]] = {}

E = TypeVar("E", bound=DomainEvent)


class Aggregate:
    """Base of the three aggregates: identity, version, pending events.

    Subclasses register under their `aggregate_type`, implement `blank(id)` (the
    state before the first event) and `apply(event)` (the only code that changes state).
    Decisions are methods that validate and then call `_trigger`.
    """

    aggregate_type: ClassVar[str] = ""
    personal_fields: ClassVar[tuple[str, ...]] = ()
    """The state's fields holding personal data, as paths: `name`, or `messages.*.content`
    for a field of every item of a collection. Masking and opening derive from this."""
    max_events: ClassVar[int | None] = None
    """The most events one may hold (`AggregateFullError`); None: unbounded (a customer,
    whose reads and commands catch a kept copy up instead of replaying its history)."""

    def __init__(self, aggregate_id: UUID) -> None:
        self.id = aggregate_id
        self.version = 0
        self.created_on: datetime | None = None
        self.modified_on: datetime | None = None
        self._pending: list[DomainEvent] = []

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if cls.aggregate_type:
            AGGREGATE_CLASSES[cls.aggregate_type] = cls

    @classmethod
    def blank(cls, aggregate_id: UUID) -> Self:
        return cls(aggregate_id)

    def apply(self, event: DomainEvent) -> None:  # pragma: no cover - abstract
        raise NotImplementedError(f"{type(self).__name__} must implement apply()")

    def personal_targets(self, event: DomainEvent) -> Iterator[tuple[str, ...]]:
        """Where this state holds the personal values `event` gives once applied: paths
        of an attribute, then keys and fields (`services.sealed_state`), each ending with
        the name of the event's field whose value it holds. By default the state's
        top-level personal fields named as the event's."""
        top = {path for path in self.personal_fields if "." not in path}
        for name in event.personal_fields:
            if name in top and getattr(event, name) is not UNSET:
                yield (name,)

    def held_bytes(self) -> int:
        """About the bytes of memory this state holds, sealed as a process keeps it,
        erring high: what bounds what it keeps between requests (`services.held`). A
        fixed state's by default, with the text it holds (a task's description and
        resolution, sealed: up to ~27 kB each, where HELD_BASE alone counted 1.5 kB and one
        agent's tasks took ~850 MB past CRM_CACHE_MB=128, red team s33); an
        aggregate whose state grows adds what it grows by."""
        long = (v for v in vars(self).values() if type(v) is str and len(v) > SHORT_TEXT)
        return HELD_BASE + sum(map(sys.getsizeof, long))

    def clone(self) -> Self:
        """A copy that later events of this aggregate leave alone: each container of
        its state copied one level. That is enough because their items are immutable
        (strings, frozen structs), and `apply` replaces items, never changes one. Made as
        `copy.copy` makes one (a new instance given the attributes) without its protocol
        lookups: ~7 us against ~20 us, paid at each command of a contended process (its
        spare) and at each read after a write (copy on write, `services.current_state`)."""
        twin = object.__new__(type(self))
        state = vars(twin)
        for name, value in vars(self).items():
            state[name] = value.copy() if isinstance(value, _CONTAINERS) else value
        return twin

    def state(self) -> dict[str, Any]:
        """Comparable snapshot of the state (for replay checks and audit)."""
        return {k: v for k, v in vars(self).items() if not k.startswith("_")}

    def __eq__(self, other: object) -> bool:
        return type(other) is type(self) and self.state() == other.state()

    __hash__ = None  # type: ignore[assignment]  # mutable state: not hashable

    def collect_events(self) -> list[DomainEvent]:
        """Hand over the events decided since the last save (eventsourcing protocol)."""
        events, self._pending = self._pending, []
        return events

    def _trigger(self, event_class: type[E], ctx: Context, **fields: Any) -> E:
        """Create the next event with the command's metadata, apply it, keep it pending.

        A naive `occurred_at` is refused here: the stored event could not be decoded.
        """
        if ctx.occurred_at.utcoffset() is None:
            raise ValidationFailed("occurred_at", "must include a time zone")
        if self.max_events is not None and self.version >= self.max_events:
            kind = self.aggregate_type
            raise AggregateFullError(
                f"{kind} {self.id} holds {self.max_events} events, the most one may:"
                f" go on in a new {kind}"
            )
        event = event_class(
            originator_id=self.id,
            originator_version=self.version + 1,
            occurred_at=ctx.occurred_at,
            actor=ctx.actor,
            actor_department=ctx.actor_department,
            correlation_id=ctx.correlation_id,
            causation_id=ctx.causation_id,
            idempotency_key=UNSET if ctx.idempotency_key is None else ctx.idempotency_key,
            **fields,
        )
        event.mutate(self)
        self._pending.append(event)
        return event


A = TypeVar("A", bound=Aggregate)
F = TypeVar("F", bound=Callable[..., None])


class EventAppliers(Generic[A]):
    """Which method of an aggregate applies which event class.

    Used as a decorator on `_when_<event>` methods, so each aggregate's `apply` is one
    dictionary lookup and an event without an applier fails loudly instead of being
    silently ignored (which would make replay diverge from the live state).
    """

    def __init__(self) -> None:
        self._by_type: dict[type[DomainEvent], Callable[[A, Any], None]] = {}

    def __call__(self, event_type: type[DomainEvent]) -> Callable[[F], F]:
        def register(method: F) -> F:
            self._by_type[event_type] = method
            return method

        return register

    def apply(self, aggregate: A, event: DomainEvent) -> None:
        method = self._by_type.get(type(event))
        if method is None:
            raise TypeError(f"{type(aggregate).__name__} cannot apply {type(event).__name__}")
        method(aggregate, event)

    def event_types(self) -> tuple[type[DomainEvent], ...]:
        return tuple(self._by_type)
