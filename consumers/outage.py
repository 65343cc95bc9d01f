"""Riding out a lost dependency (PostgreSQL, Kafka): capped backoff, one line down, one back.

The relay and the projection runner keep running through a database restart or a broker
outage instead of exiting: every failed attempt is reported here, which says how long to
wait before the next one (doubling from `first_delay` up to `max_delay`, with jitter so
that several processes do not retry in step), logs one line when a dependency is lost and
one when it answers again (however many attempts that took), and tells `on_change` which
dependencies are down, so the process can publish that it is degraded
(`consumers.process_health`): as a `Down`, which also names those of them seen refusing
writes for lack of space (`full`: PostgreSQL's disk_full, ENOSPC, SQLite's
SQLITE_FULL), a server up and answering but full, not gone (red team: every consumer's
row said "postgres down" while PostgreSQL answered with a full disk). Once seen full, a
dependency stays so until it is back: a full PostgreSQL also refuses new connections
(`could not write init file`), which say nothing of why.

No I/O of its own beyond logging; the caller does the waiting (on its stop event).
"""

from __future__ import annotations

import errno
import random
import time
from collections.abc import Callable
from dataclasses import dataclass

import structlog

log = structlog.get_logger("crm.outage")

POSTGRES = "postgres"
KAFKA = "kafka"
_DISK_FULL = "53100"  # PostgreSQL's SQLSTATE disk_full
_SQLITE_FULL = 13
_FULL_TEXTS = ("DiskFull:", "No space left on device", "database or disk is full")
"""How a failure reported as text (another process's, `writer_messages.Retrying`:
"<type>: <message>") says that the disk is full."""


class Down(frozenset[str]):
    """The dependencies down now; `full`: those of them seen refusing writes for lack of
    space (up, but full)."""

    full: frozenset[str]

    def __new__(cls, down: frozenset[str], full: frozenset[str] = frozenset()) -> Down:
        made = super().__new__(cls, down)
        made.full = full & down
        return made


@dataclass
class _Down:
    since: float
    delay: float
    attempts: int = 0
    full: bool = False


class Dependencies:
    """Which of a process's dependencies are down now, and how long to wait for each."""

    def __init__(
        self,
        process: str,
        *,
        first_delay: float = 0.2,
        max_delay: float = 5.0,
        on_change: Callable[[frozenset[str]], None] | None = None,
    ) -> None:
        self.process = process
        self._first, self._max = first_delay, max_delay
        self._on_change = on_change
        self._down: dict[str, _Down] = {}
        self._back_at: dict[str, float] = {}

    @property
    def down(self) -> Down:
        full = frozenset(name for name, state in self._down.items() if state.full)
        return Down(frozenset(self._down), full)

    def lost(self, dependency: str, error: BaseException | str, *, at: float = 0.0) -> float:
        """Record a failed attempt on `dependency`; the seconds to wait before the next.

        `at` (wall-clock time the failed attempt began) is for failures reported late, by
        another process (a projection writer): an attempt begun before the dependency was
        last seen back is old news, and changes nothing.
        """
        if at and at < self._back_at.get(dependency, 0.0):
            return self._first
        state = self._down.get(dependency)
        if state is None:
            state = self._down[dependency] = _Down(time.monotonic(), self._first)
            log.warning(
                "dependency lost", process=self.process, dependency=dependency,
                error=_reason(error),
            )  # fmt: skip
            state.full = is_full(error)
            self._changed()
        else:
            state.delay = min(state.delay * 2, self._max)
            if not state.full and is_full(error):
                state.full = True
                log.warning("dependency full", process=self.process, dependency=dependency)
                self._changed()
        state.attempts += 1
        return state.delay * random.uniform(0.5, 1.0)

    def back(self, dependency: str) -> None:
        """`dependency` answered again (a no-op when it was not down)."""
        self._back_at[dependency] = time.time()
        state = self._down.pop(dependency, None)
        if state is None:
            return
        log.info(
            "dependency back", process=self.process, dependency=dependency,
            down_s=round(time.monotonic() - state.since, 1), attempts=state.attempts,
        )  # fmt: skip
        self._changed()

    def _changed(self) -> None:
        if self._on_change is not None:
            self._on_change(self.down)


def is_full(error: BaseException | str) -> bool:
    """Whether `error` (or what it wraps) refused a write for lack of space."""
    if isinstance(error, str):
        return any(text in error for text in _FULL_TEXTS)
    cause: BaseException | None = error
    for _ in range(16):  # the explicit causes, as the API's `errors.causes` reads them
        if cause is None:
            return False
        if (
            getattr(cause, "sqlstate", None) == _DISK_FULL
            or getattr(cause, "sqlite_errorcode", None) == _SQLITE_FULL
            or (isinstance(cause, OSError) and cause.errno in (errno.ENOSPC, errno.EDQUOT))
        ):
            return True
        cause = cause.__cause__
    return False


def _reason(error: BaseException | str) -> str:
    if isinstance(error, str):
        return error.strip().splitlines()[0] if error.strip() else error
    text = str(error).strip().splitlines()
    return f"{type(error).__name__}: {text[0]}" if text else type(error).__name__
