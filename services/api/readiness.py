"""What `/readyz` checks: the event store, Kafka (PostgreSQL mode), read-model lag and
dead letters, the relay and consumers, (embedded) whether the in-process follower is
stalled, the audit checkpoint signer, and (`services.api.app`) the access log's records
waiting to be stored.

Each check returns None when fine, else one line saying what is wrong. Any failing check
makes the API `degraded`; it is not ready (503) only while the event store is
unreachable, a projection holds dead letters, or the follower is stalled: a Kafka outage
or a lagging consumer delays the read models but leaves commands and reads working.
The dependency probes answer within about a second even while PostgreSQL is down or
silent (a `SELECT 1` given `PROBE_DEADLINE_S` in all, or one TCP connect), and each
answer is kept for a second: orchestrators poll `/readyz` often, and `/metrics` asks
the same questions. Every question to a database (the `SELECT 1`, and the read-model,
pipeline and signer checks and gauges) runs on a thread of its own, one at a time per
question (`DependencyProbe.ask`): on a connection whose server went silent it waits until
the kernel finds the peer dead (`services.settings.DEAD_PEER_DEFAULTS`), behind a lock
(a table held by a migration) as long as the lock, and meanwhile every probe answers
"no answer" after `PROBE_DEADLINE_S` instead of holding one more of the server's
threads.

The dead-letter rule: not ready while any projection's live version holds a dead
letter. Such a read model lacks an event's effect, so its answers about that event's
customer are wrong, and nothing heals by itself: an operator fixes the cause, runs
`crm projections retry NAME`, and readiness returns. Rejected records (forged or
copied ones, `consumers.projecting`) do not count: they lack nothing in the read model,
and whoever can produce to the topics must not take the API out of service. Lag, by
contrast, heals alone, so it only counts beyond `LAG_LIMIT`.

Writes refused for lack of storage (`writes`, degraded only: reads still work, and every
replica shares the full store): see `services.storage_refusals`.

The signer (`audit_signer`, degraded only): a signer in this process (`crm run`) that
refuses, or keeps failing, says why; any signer, wherever it runs, that has signed
nothing for `STALE_FACTOR` intervals (plus `STALE_GRACE_S`) although the log grew, or a
newest checkpoint row that does not decode, shows in the store (`SignerWatch`).
I/O: the event store, the read-model store, one TCP connect to the broker.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any, TypeVar

import msgspec
from eventsourcing.persistence import PersistenceError

from consumers.pg_pool import DATABASE_UNAVAILABLE
from consumers.process_health import read_health
from consumers.reachability import bootstrap_servers
from consumers.readmodel_store import ReadModelStore
from projections import PROJECTIONS
from services.api.read_positions import AppliedPosition
from services.audit_log import AuditLog, open_audit_log
from services.bootstrap import Runtime
from services.signer_status import running_signers
from services.storage_refusals import StorageRefusals

ReadinessCheck = Callable[[], str | None]
"""Returns None when ready, else the reason it is not (shown in /readyz)."""

NOT_READY = ("event_store", "dead_letters", "follower")
"""The checks whose failure makes /readyz answer 503 (see the module docstring)."""
LAG_LIMIT = 10_000
"""Events (embedded) or Kafka records (per projection) behind before we call it degraded."""
PROBE_TTL_S = 1.0
PROBE_DEADLINE_S = 1.5
"""The longest a probe waits for a database's answer (a pooled connection and a query)."""
STALE_FACTOR = 3
STALE_GRACE_S = 30.0
_UNREACHABLE: tuple[type[Exception], ...] = (*DATABASE_UNAVAILABLE, PersistenceError, OSError)
T = TypeVar("T")


class DependencyProbe:
    """The API's own view of the event store and Kafka (see the module docstring)."""

    def __init__(self, runtime: Runtime) -> None:
        self._runtime = runtime
        self._answers: dict[str, tuple[float, str | None]] = {}
        self._lock = threading.Lock()
        self._asked: dict[str, Future[Any]] = {}  # each question's answer in flight

    def event_store(self) -> str | None:
        return self._cached("event_store", self._event_store)

    def kafka(self) -> str | None:
        return self._cached("kafka", lambda: kafka_check(self._runtime.settings.kafka_bootstrap))

    def guarded(self, read: Callable[[], int]) -> Callable[[], float]:
        """`read` as a gauge function: NaN instead of a wait and an error while the event
        store is unreachable."""

        def gauge() -> float:
            if self.event_store() is not None:
                return float("nan")
            try:
                return float(read())
            except _UNREACHABLE:
                return float("nan")

        return gauge

    def ask(self, question: str, read: Callable[[], T]) -> T:
        """`read()`'s answer, or its error; `TimeoutError` after `PROBE_DEADLINE_S`. It runs
        on a thread of its own, and while one runs, whoever asks the same question waits
        for that one's answer instead of starting another."""
        with self._lock:
            answer = self._asked.get(question)
            if answer is None or answer.done():
                answer = self._asked[question] = Future()
                threading.Thread(target=_settle, args=(answer, read), name=f"probe-{question}",
                                 daemon=True).start()  # fmt: skip
        result: T = answer.result(timeout=PROBE_DEADLINE_S)
        return result

    def _cached(self, name: str, check: ReadinessCheck) -> str | None:
        now = time.monotonic()
        with self._lock:
            answer = self._answers.get(name)
        if answer is not None and now - answer[0] < PROBE_TTL_S:
            return answer[1]
        result = check()
        with self._lock:
            self._answers[name] = (time.monotonic(), result)
        return result

    def _event_store(self) -> str | None:
        try:
            if self._runtime.pool is None:
                self._runtime.app.head_position()  # embedded: the SQLite file
            else:
                self.ask("event_store", self._select_one)
        except TimeoutError:
            return f"event store unavailable: {NO_ANSWER}"
        except _UNREACHABLE as error:
            return f"event store unavailable: {type(error).__name__}"
        return None

    def _select_one(self) -> None:
        assert self._runtime.pool is not None
        with self._runtime.pool.connection(timeout=PROBE_DEADLINE_S) as conn:
            conn.execute("SELECT 1")


NO_ANSWER = f"no answer within {PROBE_DEADLINE_S:g} s"


def _settle(answer: Future[T], read: Callable[[], T]) -> None:
    try:
        answer.set_result(read())
    except Exception as error:  # any: whoever waits for the answer sorts it
        answer.set_exception(error)


def default_checks(
    runtime: Runtime,
    probe: DependencyProbe,
    store: ReadModelStore | None,
    applied: AppliedPosition | None,
    refusals: StorageRefusals,
) -> dict[str, ReadinessCheck]:
    checks: dict[str, ReadinessCheck] = {
        "event_store": probe.event_store,
        "writes": refusals.check,  # degraded only: reads still work
    }
    reads: dict[str, ReadinessCheck] = {}  # asked of PostgreSQL while the event store answers
    if not runtime.settings.embedded:
        checks["kafka"] = probe.kafka
        if store is not None:
            reads["projections"] = lambda: consumers_check(store)
        reads["pipeline"] = lambda: pipeline_check(runtime)
    elif applied is not None:
        checks["projections"] = lambda: follower_check(runtime, applied)
    if store is not None:
        reads["dead_letters"] = lambda: dead_letters_check(store)
    if (watch := SignerWatch.of(runtime)) is not None:
        reads["audit_signer"] = watch.check
    return checks | {name: _if_store_up(probe, name, check) for name, check in reads.items()}


class SignerWatch:
    """Whether checkpoints keep up with the log (see the module docstring). It remembers
    since when (its own clock) the newest checkpoint has been behind the log's head, so
    it needs no clock of the signer's host; a new checkpoint starts the wait afresh."""

    def __init__(
        self, log: AuditLog, interval_s: float, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._log, self._clock = log, clock
        self.limit_s = STALE_FACTOR * interval_s + STALE_GRACE_S
        self._behind: tuple[int, float] | None = None
        self._lock = threading.Lock()

    @classmethod
    def of(cls, runtime: Runtime) -> SignerWatch | None:
        """The watch over `runtime`'s store; None for the in-memory one (never signed)."""
        try:
            log = open_audit_log(runtime.app)
        except NotImplementedError:
            return None
        return cls(log, runtime.settings.audit_checkpoint_seconds)

    def check(self) -> str | None:
        for signer in running_signers():
            if (trouble := signer.trouble()) is not None:
                return f"audit signer {trouble}"
        return self.stale()

    def unsigned(self) -> tuple[int, float]:
        """(positions the newest checkpoint is behind the head, seconds it has been)."""
        try:
            latest = self._log.latest_checkpoint()
        except msgspec.DecodeError:
            latest = None
        signed = 0 if latest is None else latest[0].position
        behind = max(self._log.last_position() - signed, 0)
        now = self._clock()
        with self._lock:
            if behind == 0:
                self._behind = None
            elif self._behind is None or self._behind[0] != signed:
                self._behind = (signed, now)
            return behind, 0.0 if self._behind is None else now - self._behind[1]

    def stale(self) -> str | None:
        try:
            self._log.latest_checkpoint()
        except msgspec.DecodeError as error:
            return (
                f"audit signer stopped: the store's newest checkpoint row does not decode "
                f"({error}); no checkpoint is signed until it is repaired or removed"
            )
        behind, waited = self.unsigned()
        if waited < self.limit_s:
            return None
        return (
            f"audit signer: nothing signed for {waited:.0f} s although {behind} positions"
            " were added (see the log of `crm run` or `crm relay`)"
        )


def _if_store_up(probe: DependencyProbe, name: str, check: ReadinessCheck) -> ReadinessCheck:
    """`check` reads PostgreSQL: only asked while the event store answers, and given
    `PROBE_DEADLINE_S` (`DependencyProbe.ask`)."""

    def guarded() -> str | None:
        if probe.event_store() is not None:
            return "unknown: the event store is unavailable"
        try:
            return probe.ask(name, check)
        except TimeoutError:
            return f"unknown: {NO_ANSWER}"
        except DATABASE_UNAVAILABLE as error:
            return f"unknown: {type(error).__name__}"

    return guarded


def kafka_check(bootstrap: str) -> str | None:
    """A TCP connect to any bootstrap server (a listening broker, not a full round trip:
    the Kafka client lives in `consumers/`, and the relay reports publishing problems)."""
    for host, port in bootstrap_servers(bootstrap):
        try:
            socket.create_connection((host, port), timeout=0.5).close()
        except OSError:
            continue
        return None
    return f"no Kafka broker accepts TCP connections at {bootstrap}"


def follower_check(runtime: Runtime, applied: AppliedPosition) -> str | None:
    """Embedded: the in-process follower is within LAG_LIMIT events of the store's head."""
    lag = runtime.app.head_position() - applied(list(PROJECTIONS))
    return None if lag <= LAG_LIMIT else f"projections {lag} events behind"


def consumers_check(store: ReadModelStore) -> str | None:
    """PostgreSQL: every projection has a live version and its consumer's last batch was
    within LAG_LIMIT Kafka records of the end of the topics."""
    problems = []
    for name in PROJECTIONS:
        status = store.status(name)
        if status.generation is None:
            problems.append(f"{name} has never run (start `crm consume {name}`)")
        elif status.lag is not None and status.lag > LAG_LIMIT:
            problems.append(f"{name} {status.lag} records behind")
    return "; ".join(problems) or None


def dead_letters_check(store: ReadModelStore) -> str | None:
    """Not ready while a projection holds dead letters (the rule: see the module doc)."""
    counts = {name: store.status(name).dead_letters for name in PROJECTIONS}
    found = [f"{name} {count}" for name, count in counts.items() if count]
    if not found:
        return None
    return f"dead letters: {', '.join(found)} (fix the cause, then `crm projections retry NAME`)"


def stalled_check(trouble: Callable[[], str | None]) -> ReadinessCheck:
    """Embedded: not ready while the follower's steps keep failing (it retries them)."""
    return lambda: None if (reason := trouble()) is None else f"projections stalled: {reason}"


def pipeline_check(runtime: Runtime) -> str | None:
    """The relay and consumers report no dependency down and no other trouble (the
    relay's audit signer refusing: `consumers.process_health`)."""
    assert runtime.pool is not None
    problems = []
    for row in read_health(runtime.pool):
        if gone := [name for name in row.down if name not in row.full]:
            problems.append(f"{row.process}: {', '.join(gone)} down")
        if row.full:  # up, answering, but refusing writes for lack of space
            problems.append(f"{row.process}: {', '.join(row.full)} full (writes refused)")
        if row.trouble:
            problems.append(f"{row.process}: {row.trouble}")
    return "; ".join(problems) or None
