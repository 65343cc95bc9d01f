"""The access log: who read whose personal data, unmasked, and when.

Every response that shows personal data unmasked appends one record: principal, time,
route, the customers whose data it showed and which personal fields. The reads hand in
what the access model let through (`revealed`); recording is an append to an in-memory
queue, and a writer thread stores the queue in batches, off the request path, in an
append-only table of its own, chained like the event log (`domain.hashchain`): each
record's link is SHA-256(previous link || position || record). `close()` (at the API's
shutdown) stores what is queued, so a graceful stop loses nothing; a crash can lose the
records of the last flush interval. While the store refuses appends (a full disk), the
queue keeps what it could not store, up to `PENDING_MAX` records: past that a read that
would show personal data is refused (`AccessLogBacklogged`, a 503) rather than shown
unrecorded or queued without bound, until the writer has stored them. The relay
publishes stored records in order to the Kafka topic `crm.access.v1`; auditors query
them over HTTP (`GET /v1/audit/access`) and with `crm audit access ID`.

I/O: the store it is given (`services.access_log_store`), on its writer thread.
"""

from __future__ import annotations

import functools
import signal
import struct
import threading
from collections import deque
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, Protocol
from uuid import UUID

import msgspec
import structlog

from consumers.outage import Dependencies
from domain.base import ERASED, MASKED
from services.access.fields import FieldAccess, unmasked
from services.access.rules import Principal

log = structlog.get_logger("crm.access_log")
_encoder = msgspec.json.Encoder()
_POSITION = struct.Struct(">q")


class AccessRecord(msgspec.Struct, frozen=True, kw_only=True):
    """One response that showed personal data unmasked."""

    at: datetime
    principal: str
    role: str
    route: str
    customers: list[UUID]
    fields: list[str]


class StoredAccess(msgspec.Struct, frozen=True, kw_only=True):
    position: int
    record: AccessRecord


_decoder = msgspec.json.Decoder(AccessRecord)


def encode(record: AccessRecord) -> bytes:
    return _encoder.encode(record)


def decode(position: int, stored: bytes) -> StoredAccess:
    return StoredAccess(position=position, record=_decoder.decode(stored))


def canonical(position: int, stored: bytes) -> bytes:
    """What a record's chain link hashes: its position (8 bytes) and its stored bytes."""
    return _POSITION.pack(position) + stored


class AccessStore(Protocol):
    def append(self, records: Sequence[bytes]) -> None:
        """Store records (encoded) in order: positions and chain links in one transaction."""
        ...

    def select(
        self,
        *,
        customer: UUID | None = None,
        principal: str | None = None,
        start: datetime | None = None,
        end: datetime | None = None,
        after: int = 0,
        limit: int = 100,
    ) -> list[tuple[int, bytes]]:
        """Stored records matching every filter given, after position `after`."""
        ...

    def entries(self, after: int, upto: int, limit: int) -> list[tuple[int, bytes]]:
        """(position, canonical bytes) of records in `after < position <= upto`."""
        ...

    def links(self, after: int, upto: int) -> list[tuple[int, int, bytes]]:
        """(position, previous position, chain) of records in `after < position <= upto`."""
        ...

    def records(self, after: int, limit: int) -> list[tuple[int, bytes]]: ...

    def published(self, topic: str) -> int: ...

    def mark_published(self, topic: str, position: int) -> None: ...

    def close(self) -> None: ...


def revealed(item: Any, personal: tuple[str, ...], access: FieldAccess) -> list[str]:
    """The personal paths of `item` (an aggregate, a row, an event) that the caller sees
    with a value: not masked, not empty, not erased."""
    if access.everything:
        return []
    return shown(item, unmasked(personal, access))


def shown(item: Any, paths: Iterable[str]) -> list[str]:
    """Those of `paths` (not masked for the caller) that `item` shows with a value. A
    plain path (a row's column, an aggregate's or event's attribute) is one lookup."""
    if item.__class__ is dict or _is_mapping(item.__class__):
        get = item.get
        return [
            path
            for path in paths
            if (get(path) not in _NOTHING if "." not in path else _shown(item, _steps(path)))
        ]
    return [
        path
        for path in paths
        if (
            getattr(item, path, None) not in _NOTHING
            if "." not in path
            else _shown(item, _steps(path))
        )
    ]


def rows_shown(
    rows: Iterable[tuple[Mapping[str, Any], Sequence[str]]], subject: str
) -> tuple[list[Any], set[str]]:
    """Of read-model rows, each with the columns (plain names) its reader sees unmasked:
    the `subject` of every row that shows one of them with a value, and which of those
    columns any row shows. A page's record names both and nothing finer, so this costs a
    row one lookup, not a list of its shown columns."""
    rows = list(rows)
    subjects = []
    for row, columns in rows:
        get = row.get
        for column in columns:
            if get(column) not in _NOTHING:
                subjects.append(row[subject])
                break
    fields = {  # per kind of access the page met (one or two), any row showing the column
        column
        for columns in {id(columns): columns for _, columns in rows}.values()
        for column in columns
        if any(row.get(column) not in _NOTHING for row, seen in rows if seen is columns)
    }
    return subjects, fields


_NOTHING = (None, MASKED, ERASED)
"""What a field shows when it shows nothing: no value, masked, or erased."""


@functools.cache
def _steps(path: str) -> tuple[str, ...]:
    """A path's parts (the paths are the projections' and aggregates' declared few)."""
    return tuple(path.split("."))


@functools.cache
def _is_mapping(kind: type) -> bool:
    """Whether values of `kind` are read by key (rows) or by attribute: once per type,
    not an ABC check per value."""
    return issubclass(kind, Mapping)


def _shown(value: Any, steps: tuple[str, ...]) -> bool:
    step, rest = steps[0], steps[1:]
    mapping = value.__class__ is dict or _is_mapping(value.__class__)  # rows are dicts
    if step == "*":
        items = value.values() if mapping else value
        return any(_shown(item, rest) for item in items or ())
    found = value.get(step) if mapping else getattr(value, step, None)
    if rest:
        return found is not None and _shown(found, rest)
    return found not in _NOTHING


BATCH = 1024
"""Records an append stores at most. The writer holds the GIL while it chains a batch
(~2 us a record), and requests wait that long: ~2 ms at most. Each append is a
transaction with its own commit: at ~5,000 logged reads/s, flushing every 0.5 s rather
than 0.2 s (fewer, fuller appends) brought the cost on GET customer from 9.7 % to 7.5 %
(means of the benchmark's in-process switch, `bench/RESULTS.md`)."""
FLUSH_SECONDS = 0.5
"""How often the writer stores the queue, and what a crash (not a graceful stop) can lose."""
STORE = "access log store"
"""The dependency the writer reports lost and back (PostgreSQL, or the SQLite file)."""
PENDING_MAX = 50_000
"""Records the queue holds at most unstored (a few hundred bytes each, a page's more: it
names its customers): some 30 s of reads at this API's pace. See the module's docs."""


class AccessLogBacklogged(Exception):  # noqa: N818 - reads as the HTTP status it maps to
    """The access log holds `PENDING_MAX` records its store has not taken yet: a read
    that would show personal data waits until they are stored (a 503 with Retry-After)."""

    def __init__(self, pending: int) -> None:
        super().__init__(
            f"{pending} access records wait to be stored; reads of personal data resume"
            " once they are"
        )


class AccessLog:
    """Records queued by requests, stored in batches by a writer thread that runs from
    `start()` to `stop()` (an app's lifespan, which may run more than once). The store
    lives as long as the process: every append is committed when it returns."""

    def __init__(
        self, store: AccessStore, *, flush_seconds: float = FLUSH_SECONDS, mode: str = "on"
    ) -> None:
        self.store = store
        self.flush_seconds = flush_seconds
        self.mode = mode  # CRM_ACCESS_LOG: on | off | switch
        self.recording = mode != "off"
        if mode != "on":
            log.warning(
                "access log not always on: reads of personal data may go unrecorded",
                mode=mode, setting="CRM_ACCESS_LOG",
            )  # fmt: skip
        self._queue: deque[bytes] = deque()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        self._switches = self._said = 0  # SIGUSR1s received, and logged by the writer

    def start(self) -> None:
        """Store queued records every `flush_seconds` until `stop()`; in `switch` mode,
        from now on SIGUSR1 turns recording off and on (the benchmark compares the two
        within one process: separate processes differ more than the log costs)."""
        if self._thread is None:
            self._wake.clear()
            self._thread = threading.Thread(target=self._run, name="crm-access-log", daemon=True)
            self._thread.start()
        if self.mode == "switch":
            signal.signal(signal.SIGUSR1, self._switch)

    def _switch(self, signum: int, frame: Any) -> None:
        """Only flips the flag: a handler that wrote could interrupt a write of the main
        thread to the same stream (a reentrant call). The writer logs the switch."""
        self.recording = not self.recording
        self._switches += 1

    def _say_switched(self) -> None:
        while self._said < self._switches:
            self._said += 1
            log.warning("access log recording switched", recording=self._said % 2 == 0)

    def reveal(self, principal: Principal, route: str, shown: Mapping[UUID, Iterable[str]]) -> None:
        """A response showed `shown` (customer -> personal fields) unmasked to `principal`."""
        if len(shown) == 1:  # most reads show one customer
            ((customer, names),) = shown.items()
            self.record(principal, route, [customer], names)
        else:
            customers = [c for c, names in shown.items() if names]
            self.record(principal, route, customers, set().union(*shown.values()))

    def record(
        self, principal: Principal, route: str, customers: list[UUID], fields: Iterable[str]
    ) -> None:
        """A response showed `fields` of `customers` unmasked to `principal` (a page: the
        customers its rows show something of, and the union of what they show)."""
        if not self.recording or not customers:
            return
        names = sorted(fields)
        if not names:
            return
        if len(customers) > 1:  # each once, in order (by their ints: UUID hashes in Python)
            customers = [c for _, c in sorted({c.int: c for c in customers}.items())]
        if len(self._queue) >= PENDING_MAX:
            raise AccessLogBacklogged(len(self._queue))
        record = AccessRecord(
            at=datetime.now(UTC),
            principal=principal.name,
            role=str(principal.role),
            route=route,
            customers=customers,
            fields=names,
        )
        self._queue.append(encode(record))

    def pending(self) -> int:
        return len(self._queue)

    def backlog(self) -> str | None:
        """For `/readyz`: None while the writer keeps up, else what waits to be stored
        (past a tenth of `PENDING_MAX`: appends are failing, not merely queued)."""
        pending = len(self._queue)
        if pending < max(1, PENDING_MAX // 10):
            return None
        refused = "; reads of personal data are refused" if pending >= PENDING_MAX else ""
        return f"{pending} access records wait to be stored{refused}"

    def flush(self) -> None:
        """Store everything queued so far (the writer does this every `flush_seconds`),
        `BATCH` records an append."""
        left = len(self._queue)
        while left:
            batch = [self._queue.popleft() for _ in range(min(left, BATCH))]
            try:
                self.store.append(batch)
            except Exception:  # keep them for the next flush: the store may be back by then
                self._queue.extendleft(reversed(batch))
                raise
            left -= len(batch)

    def _run(self) -> None:
        """Store every `flush_seconds`. A store that refuses (PostgreSQL away, a full disk)
        is tried again at the same pace, since reads of personal data wait on it, and
        logged once when it starts refusing and once when it takes records again
        (`consumers.outage`), not at every attempt."""
        store = Dependencies("access log writer")
        while not self._wake.is_set():
            self._wake.wait(self.flush_seconds)
            self._say_switched()
            try:
                self.flush()
            except Exception as error:
                store.lost(STORE, error)
            else:
                store.back(STORE)

    def stop(self) -> None:
        """Stop the writer and store what is queued (a graceful stop loses nothing)."""
        thread, self._thread = self._thread, None
        if thread is not None:
            self._wake.set()
            thread.join(timeout=10)
        self.flush()
