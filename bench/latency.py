"""Throughput and latency figures from a list of per-request seconds."""

from __future__ import annotations

import statistics


def figures(latencies: list[float], elapsed: float) -> dict[str, float]:
    """Requests/s, p50 and p99 in ms, count and wall seconds of one measured run."""
    flat = sorted(latencies)
    return {
        "per_second": round(len(flat) / elapsed, 1),
        "p50_ms": round(statistics.median(flat) * 1000, 2),
        "p99_ms": round(flat[int(len(flat) * 0.99) - 1] * 1000, 2),
        "count": len(flat),
        "seconds": round(elapsed, 2),
    }
