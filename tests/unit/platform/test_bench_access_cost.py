"""How the HTTP benchmark turns switched windows into the access log's cost."""

from __future__ import annotations

from typing import Any

from bench.bench_http import _paired, _switched, table


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


def test_pairs_of_neighbouring_windows_give_a_mean_and_its_interval() -> None:
    """on, off, off, on, on, off: each pair's cost is taken within the pair, so a drift
    of the machine between pairs (here the rate halves) does not count as cost."""
    rates = [(True, 900), (False, 1000), (False, 500), (True, 440), (True, 460), (False, 500)]
    runs = [(on, _window(rate * 2, 220.0 if on else 200.0, None)) for on, rate in rates]
    paired = _paired(runs)
    assert paired["pair_cpu_costs"] == [0.091] * 3
    assert paired["pair_cpu_cost_ci95"] == [0.091, 0.091]
    assert paired["pair_costs"] == [0.1, 0.12, 0.08]
    assert paired["pair_cost_mean"] == 0.1
    low, high = paired["pair_cost_ci95"]
    assert (low, high) == (
        round(0.1 - 4.30 * 0.02 / 3**0.5, 3),
        round(0.1 + 4.30 * 0.02 / 3**0.5, 3),
    )


def test_one_pair_has_no_interval() -> None:
    paired = _paired([(True, _window(180, 200.0, None)), (False, _window(200, 200.0, None))])
    assert paired == {"pair_costs": [0.1], "pair_cpu_costs": [0.0]}
