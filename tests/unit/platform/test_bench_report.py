"""How the benchmarks summarise what they measured: the memory profile covers the replay
only, and nested figures become one readable row each in latest.md."""

from __future__ import annotations

from bench.__main__ import flattened
from bench.bench_projections import rss_profile


def test_the_memory_profile_leaves_out_start_up_and_shut_down() -> None:
    # (time, MB): the writer process starts at t=2 and exits at t=9
    samples = [(0.0, 30.0), (1.0, 90.0), *((float(t), 170.0 + t % 2) for t in range(2, 9))]
    samples.append((9.5, 95.0))
    batches = [(2.0, 5000), (8.0, 5000)]

    profile = rss_profile(samples, batches)

    assert set(profile["rss_by_tenth_mb"]) == {170.0, 171.0}
    assert profile["rss_second_half_range_mb"] == 1.0


def test_without_batches_every_sample_counts() -> None:
    profile = rss_profile([(0.0, 10.0), (1.0, 30.0)], [])

    assert profile["rss_second_half_range_mb"] == 0.0
    assert profile["rss_by_tenth_mb"][0] == 10.0
    assert profile["rss_by_tenth_mb"][-1] == 30.0


def test_nested_figures_become_dotted_rows() -> None:
    figures = {"events": 10, "sales": {"events_per_s": 5, "single_process": {"seconds": 2.0}}}

    assert flattened(figures) == [
        ("events", 10),
        ("sales.events_per_s", 5),
        ("sales.single_process.seconds", 2.0),
    ]
