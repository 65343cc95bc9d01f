"""Noticing a projection consumer that is stuck: work waiting, nothing moving.

Seen once on a loaded machine: after a broker restart a consumer's group was `Empty` on
the broker while kafka-python looped in `ensure_coordinator_ready`, for minutes, without
a word, until the process was restarted (a new consumer joined at once). No exception
marks such a state, so the runner watches for its effect instead: records waiting on
the topics beyond the projection's stored offsets, while for `seconds` this consumer
polled nothing, wrote nothing, and the stored offsets did not move (another member of
the group may be doing the work). Then the runner rebuilds its Kafka consumer, which
rejoins the group.

Pure bookkeeping: the runner reads the offsets and the clock is injectable.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from consumers.readmodel_store import PositionKey


class Watchdog:
    """`progressed()` on every sign of life; `stuck(...)` says when to rebuild."""

    def __init__(self, seconds: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.seconds = seconds
        self._clock = clock
        self._since = clock()
        self._stored: dict[PositionKey, int] | None = None

    def progressed(self) -> None:
        """Records were polled or written: the consumer is alive."""
        self._since = self._clock()

    def stuck(self, ends: dict[PositionKey, int], stored: dict[PositionKey, int]) -> bool:
        """True when records wait beyond the `stored` offsets (`ends`: end offset per
        partition) and nothing moved for `seconds`; the clock starts again then."""
        behind = sum(max(0, end - stored.get(key, 0)) for key, end in ends.items())
        if behind == 0 or stored != self._stored:
            self._stored = stored
            self.progressed()
            return False
        if self._clock() - self._since < self.seconds:
            return False
        self.progressed()
        return True
