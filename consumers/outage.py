"""Riding out a lost dependency (PostgreSQL, Kafka): capped backoff, one line down, one back.

The relay and the projection runner keep running through a database restart or a broker
outage instead of exiting: every failed attempt is reported here, which says how long to
wait before the next one (doubling from `first_delay` up to `max_delay`, with jitter so
that several processes do not retry in step), logs one line when a dependency is lost and
one when it answers again (however many attempts that took), and tells `on_change` which
dependencies are down, so the process can publish that it is degraded
(`consumers.process_health`).

No I/O of its own beyond logging; the caller does the waiting (on its stop event).
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass

import structlog

log = structlog.get_logger("crm.outage")

POSTGRES = "postgres"
KAFKA = "kafka"


@dataclass
class _Down:
    since: float
    delay: float
    attempts: int = 0


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
    def down(self) -> frozenset[str]:
        return frozenset(self._down)

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
            self._changed()
        else:
            state.delay = min(state.delay * 2, self._max)
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


def _reason(error: BaseException | str) -> str:
    if isinstance(error, str):
        return error.strip().splitlines()[0] if error.strip() else error
    text = str(error).strip().splitlines()
    return f"{type(error).__name__}: {text[0]}" if text else type(error).__name__
