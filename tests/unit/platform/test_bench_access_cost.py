"""How the HTTP benchmark turns switched windows into the access log's cost."""

from __future__ import annotations

from typing import Any

from bench.bench_http import _switched, table


def _window(requests: int, server_us: float, postgres_us: float | None) -> dict[str, Any]:
    figures: dict[str, Any] = {
        "requests": requests,
        "seconds": 2.0,
        "requests_per_s": requests / 2.0,
        "server_cpu_us_per_request": server_us,
        "p99_ms": 5.0,
    }
    if postgres_us is not None:
        figures["postgres_cpu_us_per_request"] = postgres_us
    return figures


def test_costs_and_cpu_are_weighted_by_requests() -> None:
    on = [_window(9000, 220.0, 30.0), _window(7000, 240.0, 34.0)]
    off = [_window(10000, 200.0, 10.0), _window(10000, 210.0, 12.0)]
    cost = _switched({"on": on, "off": off})
    assert cost["requests_per_s_on"] == 4000
    assert cost["requests_per_s_off"] == 5000
    assert cost["cost"] == 0.2
    assert cost["cpu_us_on"] == round((9000 * 220 + 7000 * 240) / 16000, 1)
    assert cost["cpu_us_off"] == 205.0
    assert cost["postgres_us_on"] == round((9000 * 30 + 7000 * 34) / 16000, 1)
    assert cost["postgres_us_off"] == 11.0
    assert cost["windows_on"] == [4500, 3500]


def test_postgresql_elsewhere_counts_nothing_and_the_line_says_both() -> None:
    cost = _switched({"on": [_window(100, 250.0, 0.0)], "off": [_window(100, 200.0, 0.0)]})
    assert (cost["postgres_us_on"], cost["postgres_us_off"]) == (0.0, 0.0)
    figures = {"postgres": {"access_log_cost": {"get_customer": cost}}, "embedded": {}}
    line = next(line for line in table(figures) if "access log cost" in line)
    assert "0.0% of requests/s" in line
    assert "250.0 / 200.0 us a request; PostgreSQL's 0.0 / 0.0 us" in line
