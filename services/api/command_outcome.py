"""Whether a failed command surely stored nothing: when its Idempotency-Key is released.

A keyed command that failed releases its key (`CommandCall.run`) only when its failure
proves that the attempt stored nothing, so that a retry runs it again. On any other
failure the key stays held: a retry answers 409 `idempotency-key-in-use` (with
`Retry-After`: the seconds left of the lease) until the lease runs out, then takes the
key over and asks the event store whether the attempt committed
(`services.idempotency_recovery`), exactly as after a dead process. Released after a
commit whose answer was lost, a retry ran the command a second time (a second message,
a second customer: red team, a batch committed as PostgreSQL went away).

A failure proves nothing stored when it is:
* a decision (`DECISIONS`): the domain's (a field, a rule, a version conflict, an
  unknown target, an erased customer), the access model's, a malformed request or
  Idempotency-Key, all taken before the save; or the event store's refusal, which it
  decides under its write lock with nothing of the batch stored
  (`services.batch_refusals`: a version taken, an event about an erased customer), or
  any other error PostgreSQL answered to the batch's one attempt on a connection still
  open (`StoreRefusedError`: a full disk, a lock timeout; the call did not commit).
  A retried batch that finds itself stored answers, never refuses;
* a store full, or locked past its wait (`errors.storage_full`, `errors.busy`), unless
  it came out of a write to PostgreSQL's event store (a psycopg error under
  eventsourcing's `PersistenceError`): its writer tries a batch again on a new
  connection after a lost one, and only the last attempt's error comes out, so a full
  disk or a lock timeout there may follow an attempt whose commit's answer was lost.
  The key stores raise their drivers' errors as they are; each of their writes is
  before the command's save, but an erasure's destruction of the key, after its event,
  which a retry finishes rather than repeats (`services.erasure_command`): no
  second event either way. SQLite's event store is a local file: a failed
  transaction is rolled back, and no answer can be lost.
Anything else proves nothing: the database out of reach (the insert may have been sent),
a request cancelled (its batch commits or not without it), an unexpected exception.
I/O: none.
"""

from __future__ import annotations

import psycopg
from eventsourcing.persistence import IntegrityError, PersistenceError

from domain.base import DomainError
from services.access.rules import Forbidden
from services.api.http_errors import BadRequest
from services.api.store_troubles import busy, causes, storage_full
from services.batch_refusals import ErasedSubjectError, StoreRefusedError
from services.idempotency import IdempotencyError

DECISIONS: tuple[type[Exception], ...] = (
    DomainError,
    Forbidden,
    BadRequest,
    IdempotencyError,
    IntegrityError,
    ErasedSubjectError,
    StoreRefusedError,
)
"""Refusals taken before anything is stored, or by the event store under its lock with
nothing of the batch stored (`IntegrityError`: eventsourcing's, `BatchConflictError`)."""


def stored_nothing(error: BaseException) -> bool:
    """Whether `error`, raised by a command, proves that it stored no event."""
    if isinstance(error, DECISIONS):
        return True
    return (storage_full(error) or busy(error)) and not _from_postgres_writes(error)


def _from_postgres_writes(error: BaseException) -> bool:
    """Whether `error` came out of eventsourcing's PostgreSQL side: a psycopg error that
    an eventsourcing `PersistenceError` wraps (its recorders, the batch writer, the group
    committer's `StoreFailedError`). Loads are there too: they store nothing, but a
    failure there keeping the key only delays a retry by the lease."""
    chain = list(causes(error))  # the explicit causes, as the problem table reads them
    return any(isinstance(cause, PersistenceError) for cause in chain) and any(
        isinstance(cause, psycopg.Error) for cause in chain
    )
