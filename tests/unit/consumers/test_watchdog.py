"""The watchdog fires only when records wait and nothing moved for its whole period."""

from __future__ import annotations

from consumers.watchdog import Watchdog
from tests.fake_clock import Clock

ENDS = {("t", 0): 100, ("t", 1): 50}


def test_it_fires_after_its_period_without_progress_while_records_wait() -> None:
    clock = Clock()
    watchdog = Watchdog(60, clock)
    stored = {("t", 0): 10, ("t", 1): 50}
    assert not watchdog.stuck(ENDS, stored)
    clock.now = 59
    assert not watchdog.stuck(ENDS, stored)
    clock.now = 61
    assert watchdog.stuck(ENDS, stored)
    assert not watchdog.stuck(ENDS, stored)  # and the period starts again
    clock.now = 122
    assert watchdog.stuck(ENDS, stored)


def test_moving_offsets_polled_records_or_no_work_keep_it_quiet() -> None:
    clock = Clock()
    watchdog = Watchdog(60, clock)
    for step in range(1, 10):
        clock.now = step * 50
        assert not watchdog.stuck(ENDS, {("t", 0): step})  # another member makes progress
    for step in range(10, 20):
        clock.now = step * 50
        watchdog.progressed()  # this consumer polled records
        assert not watchdog.stuck(ENDS, {("t", 0): 9})
    for step in range(20, 30):
        clock.now = step * 50
        assert not watchdog.stuck(ENDS, dict(ENDS))  # caught up: nothing waits
