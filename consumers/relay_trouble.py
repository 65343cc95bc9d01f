"""What keeps `crm relay` from its work, beyond a dependency down: for its health row.

A lock held on the relay's position row (or on the audit log's tables its remembered
head reads) is no outage: PostgreSQL answers, and every other statement goes through.
So a lock wait that runs out (`consumers.pg_lock_wait.LockWaitTimedOut`) is not
reported as "postgres down" (`consumers.outage`) but as the process's trouble, which
names what waits and who holds the lock: `/readyz` is degraded and
`crm_process_trouble` is 1 while it lasts (`LockWaits`). The audit signer of the same
process reports its own trouble; `Troubles` writes both as the row's one line.

No I/O of its own beyond logging; the caller waits (on its stop event) and writes.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import structlog

from consumers.pg_lock_wait import LockWaitTimedOut

log = structlog.get_logger("crm.relay")

LOCK_RETRY_S = 1.0
"""How long the relay waits before trying a statement whose lock wait ran out again
(each try waits `LOCK_TIMEOUT_S` at most, queued for the lock meanwhile)."""

Report = Callable[[str | None], None]


class LockWaits:
    """The relay's lock waits that ran out, one after another, until one goes through:
    logged and reported once while the same sessions hold on (again when they change),
    and once more when it is over."""

    def __init__(self, report: Report | None = None) -> None:
        self._report = report
        self._since: float | None = None
        self._said: str | None = None

    def ran_out(self, error: LockWaitTimedOut) -> float:
        """Record a wait that ran out; the seconds to wait before trying again."""
        if self._since is None:
            self._since = time.monotonic()
        if (said := str(error)) != self._said:
            log.warning("relay waiting for a lock", error=said)
            self._said = said
            if self._report is not None:
                self._report(said)
        return LOCK_RETRY_S

    def over(self) -> None:
        """The statement went through (a no-op when nothing waited)."""
        if self._since is None:
            return
        log.info("relay lock wait over", waited_s=round(time.monotonic() - self._since, 1))
        self._since = self._said = None
        if self._report is not None:
            self._report(None)


class Troubles:
    """One trouble line (`write`: `HealthReport.trouble`) from several sources, each
    reporting its own (None: none); written whenever one changes, from any thread."""

    def __init__(self, write: Report) -> None:
        self._write = write
        self._lines: dict[str, str] = {}
        self._lock = threading.Lock()

    def of(self, source: str) -> Report:
        """The report of `source` (its lines come in the order sources were named)."""
        with self._lock:
            self._lines.setdefault(source, "")

        def report(text: str | None) -> None:
            with self._lock:
                self._lines[source] = text or ""
                joined = "; ".join(line for line in self._lines.values() if line)
                self._write(joined or None)

        return report
