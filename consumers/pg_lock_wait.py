"""Schema changes that others read through wait for their locks without stalling readers.

A switch (`consumers.store_postgres`) drops a projection's stable schema and its old
generation: ACCESS EXCLUSIVE on every view and table in them. PostgreSQL grants locks in
the order they are asked for, so while that request waits for a session holding ACCESS
SHARE, every later reader of those relations waits behind it. An analyst's transaction
left open after one `SELECT` (a BI tool, psycopg without autocommit) held a switch, and
with it the API's department reads, until the analyst's session ended.

`patiently` therefore runs such a transaction under `lock_timeout` (`LOCK_TIMEOUT_S`):
a lock request waits at most that long, and a reader queued behind it as long. On
`LockNotAvailable`, or `DeadlockDetected` (a reader of a join holding one view while the
switch holds the next), the whole transaction rolls back: nothing is half switched. It
logs who holds locks on the projection's schemas (pid, user, application, state) when
they differ from the last it named, waits until those sessions let go (looking every
`POLL_S`; no lock is asked for meanwhile, so readers go on), tries again at the latest
after `RETRY_EVERY_S` (a session may let go and take again between two looks), and gives
up after `PATIENCE_S` with `LocksHeld`, naming them.

`bounded` is the same bound for one transaction of a process that must never hang on
a lock and has its own loop to try again in (the relay storing its position, the
audit signer's statements): a wait that runs out is `LockWaitTimedOut`, naming who
holds a lock on the relations the transaction needs, and the caller decides when to
try again (red team: a `LOCK TABLE crm_relay_position` held the relay, and SIGTERM
with it, for as long as it was held).

Why give up at all: an analyst's login ends a transaction left idle for a minute and a
statement running for five (`consumers.analysts`), so an analyst's forgotten transaction
is gone long before `PATIENCE_S`. A session that still holds on then keeps working, or is
another role's; someone has to end it or wait for it, and a `crm projections rebuild`
says who rather than hang.

I/O: PostgreSQL.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any, LiteralString, NamedTuple, TypeVar

import structlog
from psycopg import Connection, errors
from psycopg.rows import tuple_row
from psycopg_pool import ConnectionPool

from consumers.readmodel_store import LocksHeld

log = structlog.get_logger("crm.projections")

T = TypeVar("T")

LOCK_TIMEOUT_S = 0.5
"""How long one attempt waits for any one lock, and so about the longest a reader of the
projection queues behind it: well within the API's read deadline
(`CRM_READ_QUERY_SECONDS`, 1 s by default), which answered a department read queued
behind a 2 s attempt 503 `query-timeout`. Below PostgreSQL's `deadlock_timeout` (1 s by
default): in a deadlock with a reader the attempt gives up first and tries again, and
the reader goes on."""
RETRY_EVERY_S = 15.0
"""After a failed attempt, the next comes once the sessions that held the locks let go,
or after this long at the latest."""
POLL_S = 0.25
"""How often `pg_locks` is read while waiting for holders to let go."""
PATIENCE_S = 600.0
"""How long to keep trying before `LocksHeld`: longer than an analyst's statement timeout
and idle-transaction timeout together (`consumers.analysts`)."""

_LOCK_WAITS = (errors.LockNotAvailable, errors.DeadlockDetected)
_HOLDING: LiteralString = """
SELECT l.pid, a.usename, a.application_name, a.state,
       extract(epoch FROM now() - a.xact_start)::float8,
       array_agg(DISTINCT format('%%I.%%I', n.nspname, c.relname))
FROM pg_locks l
JOIN pg_class c ON c.oid = l.relation
JOIN pg_namespace n ON n.oid = c.relnamespace
LEFT JOIN pg_stat_activity a ON a.pid = l.pid
WHERE l.locktype = 'relation' AND l.granted AND l.pid <> pg_backend_pid()
  AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
  AND """
_GROUPED: LiteralString = """
GROUP BY 1, 2, 3, 4, 5
ORDER BY 1"""
_HOLDERS = (
    _HOLDING
    + """(n.nspname = %(name)s OR n.nspname LIKE %(generations)s
       OR c.oid = to_regclass('crm_projections'))"""
    + _GROUPED
)
"""Sessions holding a lock on a relation of the projection's schemas (stable views and
generations) or on the generations registry, with those relations. PostgreSQL shows
another role's state and transaction start only to its members and `pg_read_all_stats`:
those may be NULL."""
_HOLDERS_OF = (
    _HOLDING
    + """l.mode <> 'AccessShareLock'
  AND c.oid IN (SELECT to_regclass(name) FROM unnest(%(relations)s::text[]) AS name)"""
    + _GROUPED
)
"""Sessions holding a lock on one of the named relations, other than a reader's (which
blocks only `ACCESS EXCLUSIVE`, never asked for by those who use `bounded`)."""


class Holder(NamedTuple):
    pid: int
    user: str | None
    application: str | None
    state: str | None
    in_transaction_s: float | None
    relations: list[str]

    def __str__(self) -> str:
        return self.named(since=True)

    def named(self, *, since: bool) -> str:
        """Who it is and what it holds; `since`: with how long it has been in its
        transaction (a text that changes every second, not for a repeated report)."""
        held = ""
        if since and self.in_transaction_s is not None:
            held = f" for {self.in_transaction_s:.0f} s"
        state = self.state or "state not visible"
        shown = ", ".join(self.relations[:3]) + (", ..." if len(self.relations) > 3 else "")
        return (
            f"pid {self.pid} ({self.user}, application {self.application or ''!r},"
            f" {state}{held}; holds {shown})"
        )


def patiently(
    pool: ConnectionPool,
    projection: str,
    work: Callable[[Connection[Any]], T],
    patience: float = PATIENCE_S,
) -> T:
    """`work(conn)` in one transaction whose lock waits are bounded, tried again until
    it is done or `patience` seconds have gone (`LocksHeld`; nothing of it done)."""
    started = time.monotonic()
    named: frozenset[int] | None = None
    while True:
        try:
            return _attempt(pool, work)
        except _LOCK_WAITS as error:
            held, reason = holders(pool, projection), type(error).__name__
        waited = time.monotonic() - started
        if waited >= patience:
            raise LocksHeld(projection, waited, [str(h) for h in held])
        pids = frozenset(h.pid for h in held)
        if pids != named:  # named once, while the same sessions hold on
            log.warning("lock_wait", projection=projection, reason=reason,
                        holders=[str(h) for h in held], retry_within_s=RETRY_EVERY_S,
                        gives_up_after_s=patience)  # fmt: skip
            named = pids
        else:
            log.info("lock_wait_continues", projection=projection, waited_s=round(waited))
        _until_released(
            pool, projection, pids, min(started + patience, time.monotonic() + RETRY_EVERY_S)
        )


def holders(pool: ConnectionPool, projection: str) -> list[Holder]:
    """Who holds a lock on the projection's relations or the generations registry now."""
    params = {"name": projection, "generations": f"{projection}\\_v%"}
    with pool.connection() as conn:
        return [Holder(*row) for row in conn.execute(_HOLDERS, params).fetchall()]


def _attempt(pool: ConnectionPool, work: Callable[[Connection[Any]], T]) -> T:
    with pool.connection() as conn, conn.transaction():
        bound_lock_waits(conn)
        return work(conn)


def bound_lock_waits(conn: Connection[Any], seconds: float = LOCK_TIMEOUT_S) -> None:
    """In a transaction of `conn`: each lock it asks for from now on waits at most
    `seconds` (`SET LOCAL lock_timeout`), then `LockNotAvailable`."""
    timeout = f"{round(seconds * 1000)}ms"
    conn.execute("SELECT set_config('lock_timeout', %s, true)", (timeout,))


class LockWaitTimedOut(Exception):  # noqa: N818 - reads as what happened
    """`what` waited `LOCK_TIMEOUT_S` for a lock and gave up (nothing of it done);
    `holders`: the sessions holding a lock on the relations it needed, as they were
    seen then. Its text names them without their durations: the same while the same
    sessions hold on, so a caller trying again can report it once."""

    def __init__(self, what: str, relations: Sequence[str], holders: list[Holder]) -> None:
        self.what, self.relations, self.holders = what, list(relations), holders
        named = "; ".join(h.named(since=False) for h in holders) or "no holder seen any more"
        super().__init__(
            f"{what}: waiting for a lock on {', '.join(relations)} (each wait ends after"
            f" {LOCK_TIMEOUT_S:g} s, then tries again): held by {named}"
        )


@contextmanager
def bounded(
    conn: Connection[Any], what: str, relations: Sequence[str]
) -> Iterator[Connection[Any]]:
    """A transaction on `conn` whose lock waits last at most `LOCK_TIMEOUT_S`; one that
    runs out rolls it back and is `LockWaitTimedOut`, naming who holds a lock on
    `relations` (their names as `to_regclass` reads them)."""
    try:
        with conn.transaction():
            bound_lock_waits(conn)
            yield conn
    except errors.LockNotAvailable:
        with (
            conn.transaction(),  # a pool's connection need not autocommit
            conn.cursor(row_factory=tuple_row) as cursor,  # the event store's gives dicts
        ):
            rows = cursor.execute(_HOLDERS_OF, {"relations": list(relations)}).fetchall()
        raise LockWaitTimedOut(what, relations, [Holder(*row) for row in rows]) from None


def _until_released(
    pool: ConnectionPool, projection: str, pids: frozenset[int], until: float
) -> None:
    """Return once none of `pids` holds a lock the work needs, or at `until`."""
    while time.monotonic() < until:
        time.sleep(min(POLL_S, max(0.0, until - time.monotonic())))
        if not pids & {h.pid for h in holders(pool, projection)}:
            return
