"""One line when a dependency is lost, one when it is back, capped backoff in between."""

from __future__ import annotations

import time

from structlog.testing import capture_logs

from consumers.outage import Dependencies


def test_many_failed_attempts_log_one_line_down_and_one_back() -> None:
    changes: list[frozenset[str]] = []
    deps = Dependencies("relay", first_delay=0.2, max_delay=5.0, on_change=changes.append)
    with capture_logs() as logs:
        delays = [deps.lost("postgres", OSError("refused\nmore")) for _ in range(20)]
        deps.back("postgres")
        deps.back("postgres")
    assert [(e["event"], e["dependency"]) for e in logs] == [
        ("dependency lost", "postgres"),
        ("dependency back", "postgres"),
    ]
    assert logs[0]["error"] == "OSError: refused"
    assert logs[1]["attempts"] == 20
    assert changes == [frozenset({"postgres"}), frozenset()]
    assert 0.1 <= delays[0] <= 0.2
    assert all(delay <= 5.0 for delay in delays)
    assert delays[-1] >= 2.5  # doubled up to the cap (jittered by at most half)


def test_a_failure_reported_late_from_before_the_recovery_is_old_news() -> None:
    deps = Dependencies("consume sales")
    before = time.time() - 1  # the failure happened a second before the recovery
    deps.back("postgres")
    with capture_logs() as logs:
        deps.lost("postgres", "terminating connection", at=before)
    assert logs == []
    assert deps.down == frozenset()
    deps.lost("postgres", "terminating connection", at=time.time())
    assert deps.down == frozenset({"postgres"})
