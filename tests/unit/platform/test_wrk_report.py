"""Reading wrk's text report: requests/s, latency percentiles in any unit, failures."""

from __future__ import annotations

import pytest

from bench.wrk import WrkError, duration_seconds, parse

REPORT = """\
Running 8s test @ http://127.0.0.1:40111
  2 threads and 16 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency     2.73ms    3.24ms  50.32ms   91.21%
    Req/Sec     2.98k     1.79k    6.63k    56.00%
  Latency Distribution
     50%  850.00us
     75%    3.12ms
     90%    5.22ms
     99%   20.49ms
  47462 requests in 8.01s, 6.71MB read
Requests/sec:   5925.34
Transfer/sec:    858.30KB
"""

FAILING = """\
Running 2s test @ http://127.0.0.1:40111
  2 threads and 64 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency   310.44ms  250.11ms   1.99s    71.00%
    Req/Sec    99.10     40.00   200.00     60.00%
  Latency Distribution
     50%  250.00ms
     75%  400.00ms
     90%  700.00ms
     99%    1.20s
  396 requests in 2.00m, 90.00KB read
  Socket errors: connect 0, read 2, write 0, timeout 5
  Non-2xx or 3xx responses: 12
Requests/sec:    198.00
Transfer/sec:     45.00KB
"""


def test_a_clean_report() -> None:
    assert parse(REPORT) == {
        "requests_per_s": 5925.3,
        "p50_ms": 0.85,
        "p90_ms": 5.22,
        "p99_ms": 20.49,
        "requests": 47462,
        "seconds": 8.01,
        "non_2xx": 0,
        "socket_errors": 0,
    }


def test_failures_are_counted_and_seconds_and_minutes_read() -> None:
    figures = parse(FAILING)

    assert figures["non_2xx"] == 12
    assert figures["socket_errors"] == 7
    assert figures["p99_ms"] == 1200.0
    assert figures["seconds"] == 120.0


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("850.00us", 850e-6), ("2.00ms", 0.002), ("1.50s", 1.5), ("2.00m", 120.0), ("1.00h", 3600.0)],
)
def test_durations_in_every_unit(text: str, seconds: float) -> None:
    assert duration_seconds(text) == pytest.approx(seconds)


def test_a_report_without_the_latency_distribution_is_refused() -> None:
    without = "\n".join(line for line in REPORT.splitlines() if "%" not in line or "Req" in line)

    with pytest.raises(WrkError, match="--latency"):
        parse(without)


def test_something_else_is_refused() -> None:
    with pytest.raises(WrkError, match="no wrk report"):
        parse("Usage: wrk <options> <url>\n")
