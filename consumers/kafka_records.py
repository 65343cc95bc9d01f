"""What the Kafka adapter (`consumers.kafka_io`) hands out and raises, without kafka.

Callers see bytes in, bytes out, and two project exceptions: `BrokerUnavailable`
(transient: retry later) and `KafkaFailure` (anything else the broker refused). A record
is a `Consumed` (what a consumer reads of it) or a whole `Record` (with its key and
headers). Apart from `kafka_io` so that a module that only reads records or catches the
failures (the hand-over, the audits, their tests) does not load kafka-python (0.4-0.6 s
here, against 0.03 s for this module).

I/O: none.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple, Protocol

TopicPartitionKey = tuple[str, int]
Headers = Sequence[tuple[str, bytes]]


class KafkaFailure(Exception):  # noqa: N818 - public name others import
    """The broker refused a request for a reason that retrying will not fix."""


class BrokerUnavailable(KafkaFailure):
    """No broker answered in time; the operation may succeed later."""


class Consumed(Protocol):
    """What a consumer reads of a record. `kafka_io.TopicConsumer.poll` hands out
    kafka-python's own records, which have these attributes: converting each one cost
    ~8 % of a replay's reading (one with a null value is copied with `b""`), and a
    `Record` for one it could not parse."""

    @property
    def topic(self) -> str: ...

    @property
    def partition(self) -> int: ...

    @property
    def offset(self) -> int: ...

    @property
    def value(self) -> bytes: ...


class Record(NamedTuple):
    """One record with its key and headers (a `Consumed`; `kafka_io.read_all` yields
    these)."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes
    """`b""` for a null value (a tombstone) too."""
    headers: tuple[tuple[str, bytes | None], ...] = ()
    unreadable: str | None = None
    """Why kafka-python could not parse the record (then its key is None, its value
    `b""`): it can be neither read nor applied, only passed over
    (`kafka_io._past_unreadable`)."""
