"""The one codec: domain events to bytes and back, for the event store and for Kafka.

Stored form: the event Struct as JSON (with its `type` tag), personal fields replaced
by ciphertext from the data subject's key ("sealed"). The stored topic is
`<wire name>@<class_version>` so a reader knows the type and the schema version
without parsing the payload. Older versions are upcast on the way in with the event
class's `upcast_vN_vN+1(state: dict) -> None` static methods.

Sealing needs a `PersonalDataCipher`; its real implementation (AES-GCM with keys in
a database) lives outside the domain. `PLAINTEXT` seals nothing, for pure tests.

I/O: none.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterable
from dataclasses import dataclass
from functools import cache
from typing import Any, Protocol, Union
from uuid import UUID

import msgspec
from eventsourcing.persistence import JSONTranscoder, Mapper, StoredEvent

from domain.base import DomainEvent

_encoder = msgspec.json.Encoder()


class UnknownEventType(ValueError):  # noqa: N818 - public name others import
    """A topic or `type` names no event class this code knows."""


class PersonalDataCipher(Protocol):
    """Encrypts personal fields with the key of the customer they belong to."""

    def encrypt(self, subject: UUID, plaintext: str) -> str: ...

    def decrypt(self, subject: UUID, sealed: str) -> str:
        """The plaintext, or `domain.base.ERASED` when the subject's key is gone."""
        ...


class _Plaintext:
    def encrypt(self, subject: UUID, plaintext: str) -> str:
        return plaintext

    def decrypt(self, subject: UUID, sealed: str) -> str:
        return sealed


PLAINTEXT: PersonalDataCipher = _Plaintext()

SEALED_PREFIX = "enc:v1:"
"""How a sealed value begins: `enc:v1:<urlsafe base64, padded, of a 12-byte nonce, the
ciphertext and a 16-byte tag>` (AES-GCM, written by `consumers.keyring`). The ciphertext
is as long as the plaintext's UTF-8, so a sealed value tells its plaintext's size."""
_SEALED_OVERHEAD = 12 + 16


def text_size(value: str) -> int:
    """The bytes of `value`'s UTF-8 plaintext, whether `value` is sealed or not: what a
    conversation's text bound counts, so that a command can count it unopened."""
    if not value.startswith(SEALED_PREFIX):
        return len(value) if value.isascii() else len(value.encode())  # no copy for ASCII
    encoded = len(value) - len(SEALED_PREFIX)
    padding = len(value) - len(value.rstrip("="))
    return max(0, encoded // 4 * 3 - padding - _SEALED_OVERHEAD)


def event_types() -> dict[str, type[DomainEvent]]:
    """Every concrete event class by its wire name (its `type` tag)."""
    _load_aggregates()
    found: dict[str, type[DomainEvent]] = {}
    pending = list(DomainEvent.__subclasses__())
    while pending:
        cls = pending.pop()
        pending.extend(cls.__subclasses__())
        tag = cls.__struct_config__.tag
        if isinstance(tag, str) and found.setdefault(tag, cls) is not cls:
            raise TypeError(f"two event classes claim the wire name {tag!r}")
    return found


def event_class(wire_name: str) -> type[DomainEvent]:
    cls = _known.get(wire_name)
    if cls is None:
        _known.update(event_types())
        cls = _known.get(wire_name)
    if cls is None:
        raise UnknownEventType(f"unknown event type {wire_name!r}")
    return cls


_known: dict[str, type[DomainEvent]] = {}


def topic_of(event: DomainEvent) -> str:
    return f"{event.wire_name()}@{event.class_version}"


@cache  # a handful of distinct topics, looked up once per stored event
def parse_topic(topic: str) -> tuple[type[DomainEvent], int]:
    name, _, version = topic.partition("@")
    return event_class(name), int(version or 1)


def encode(event: DomainEvent) -> bytes:
    """Bytes of an (already sealed, or non-personal) event: the only JSON encoder of events."""
    return _encoder.encode(event)


def decode(
    cls: type[DomainEvent], data: bytes | str | memoryview, version: int | None = None
) -> DomainEvent:
    """An event of `cls` from its JSON, upcast from `version` (default: current)."""
    if version is None or version == cls.class_version:
        return _decoder(cls).decode(data)
    state: dict[str, Any] = msgspec.json.decode(data)
    for step in range(version, cls.class_version):
        getattr(cls, f"upcast_v{step}_v{step + 1}")(state)
    return msgspec.convert(state, cls)


def decode_tagged(data: bytes | memoryview) -> DomainEvent:
    """An event of the current schema from its JSON as `encode` wrote it (the `type` tag
    names the class): for bytes that never left this version of the code, such as a
    batch handed to a projection writer process."""
    return _tagged_decoder().decode(data)


def sealed_event(stored: StoredEvent) -> DomainEvent:
    """A stored event decoded, its personal fields still sealed (`unseal` opens them)."""
    cls, version = parse_topic(stored.topic)
    return decode(cls, stored.state, version)


def seal(event: DomainEvent, cipher: PersonalDataCipher) -> DomainEvent:
    """The event with its personal fields encrypted for storage and publication."""
    return _transform(event, cipher.encrypt, event.personal_fields)


def unseal(
    event: DomainEvent, cipher: PersonalDataCipher, fields: Iterable[str] | None = None
) -> DomainEvent:
    """The event with its personal fields readable (or `ERASED` once the key is gone):
    all of them, or only `fields` (a reader that needs a few saves decrypting the rest)."""
    return _transform(event, cipher.decrypt, event.personal_fields if fields is None else fields)


def _transform(event: DomainEvent, func: Any, names: Iterable[str]) -> DomainEvent:
    if not names:
        return event
    subject = event.data_subject
    changes = {
        name: func(subject, value)
        for name in names
        if isinstance(value := getattr(event, name), str)
    }
    return msgspec.structs.replace(event, **changes) if changes else event


@cache
def _decoder(cls: type[DomainEvent]) -> msgspec.json.Decoder[DomainEvent]:
    return msgspec.json.Decoder(cls)


@cache
def _tagged_decoder() -> msgspec.json.Decoder[DomainEvent]:
    every = tuple(event_types().values())
    return msgspec.json.Decoder(Union[every])  # noqa: UP007 - a union built at run time


@cache
def _load_aggregates() -> None:
    """Import the aggregate modules so that their events are registered."""
    for module in ("domain.customer", "domain.conversation", "domain.task"):
        importlib.import_module(module)


@dataclass(frozen=True, eq=False)  # compared as a `StoredEvent` is
class SubjectStoredEvent(StoredEvent):
    """A stored form this codec made, with its event's `data_subject` beside it: every
    insert names each event's data subject (`services.pg_batch_recorder.insert_columns`),
    and reading it from the state decoded the whole event again (~12,000 instructions
    an event, more than encoding it)."""

    data_subject: UUID


class CodecMapper(Mapper[UUID]):
    """eventsourcing Mapper that stores msgspec events through this codec.

    The stock 9.5.6 Mapper reads `vars(event)`, which Structs do not have.
    """

    def __init__(self, cipher: PersonalDataCipher = PLAINTEXT) -> None:
        super().__init__(transcoder=JSONTranscoder())  # unused: this codec encodes
        self.personal_data_cipher = cipher

    def to_stored_event(self, domain_event: Any) -> StoredEvent:
        return self.sealed_and_stored(domain_event)[1]

    def sealed_and_stored(self, event: DomainEvent) -> tuple[DomainEvent, StoredEvent]:
        """The event sealed (its personal fields encrypted, once) and its stored form:
        what a saver keeps of it holds what the store holds, never its plaintext."""
        sealed = seal(event, self.personal_data_cipher)
        stored = SubjectStoredEvent(
            originator_id=event.originator_id,
            originator_version=event.originator_version,
            topic=topic_of(event),
            state=encode(sealed),
            data_subject=event.data_subject,
        )
        return sealed, stored

    def to_domain_event(self, stored_event: StoredEvent) -> Any:
        return unseal(sealed_event(stored_event), self.personal_data_cipher)
