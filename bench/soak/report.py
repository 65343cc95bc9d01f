"""What a soak run found, and its report as Markdown (the figures for bench/RESULTS.md).

Pure: built from what `bench.soak.__main__` gathered.
"""

from __future__ import annotations

from dataclasses import dataclass

from bench.soak.checks import Published
from bench.soak.faults import Recovery
from bench.soak.load import Ack, Tally


@dataclass
class Figures:
    recoveries: list[Recovery]
    tally: Tally
    missing: list[Ack]
    published: Published
    caught_up: bool
    verified: dict[str, bool]
    rejected: dict[str, int]
    """Per projection: records rejected (none is forged here: any would be a loss)."""
    exits: list[str]
    """Processes that ended without the soak killing them."""
    restarts: dict[str, tuple[int, int]]
    """Per role: (SIGKILLs by the soak, starts)."""
    writer_restarts: int
    minutes: float = 0.0

    @property
    def failures(self) -> list[str]:
        found = [f"not recovered: {r.fault}" for r in self.recoveries if r.recovered_s is None]
        found += [f"acknowledged but not stored: {a}" for a in self.missing[:10]]
        found += [f"stored but not on Kafka: {lost}" for lost in self.published.lost[:10]]
        found += [f"out of its place on Kafka: {r}" for r in self.published.out_of_place[:10]]
        found += [] if self.caught_up else ["the pipeline did not catch up"]
        found += [f"crm projections verify {n} found differences" for n, ok in
                  self.verified.items() if not ok]  # fmt: skip
        found += [f"{n} rejected {count} genuine records" for n, count in
                  self.rejected.items() if count]  # fmt: skip
        found += self.exits
        found += [f"{role} started {s} times for {k} SIGKILLs" for role, (k, s) in
                  self.restarts.items() if s != k + 1]  # fmt: skip
        found += [] if self.writer_restarts else ["no writer process was started again"]
        found += [f"HTTP 500 answered {self.tally.outcomes['500']} times"] * bool(
            self.tally.outcomes["500"]
        )
        return found

    @property
    def passed(self) -> bool:
        return not self.failures


def markdown(figures: Figures, *, quick: bool) -> str:
    """The report: faults and recovery times, then the checks and the load."""
    tally, published = figures.tally, figures.published
    lines = [
        f"## Soak ({'--quick' if quick else 'full'}, {figures.minutes} min): "
        + ("PASSED" if figures.passed else "FAILED"),
        "",
        "| fault | down (s) | recovered after (s) |",
        "|---|---:|---:|",
    ]
    for r in figures.recoveries:
        down = "" if r.down_s is None else f"{r.down_s:.1f}"
        recovered = "not recovered" if r.recovered_s is None else f"{r.recovered_s:.1f}"
        lines.append(f"| {r.fault} | {down} | {recovered} |")
    outcomes = ", ".join(f"{k}: {v}" for k, v in sorted(tally.outcomes.items()))
    lines += [
        "",
        f"* commands acknowledged: {len(tally.acks)} (every one stored: "
        f"{'yes' if not figures.missing else f'NO, {len(figures.missing)} missing'}); "
        f"given up: {tally.gave_up}; refused: {len(tally.rejected)}",
        f"* every attempt's outcome: {outcomes}",
        f"* events stored: {published.stored}; records on Kafka: {published.records}; "
        f"lost: {len(published.lost)}; duplicates: {published.duplicates}; out of their"
        f" place: {len(published.out_of_place)}",
        f"* projections caught up: {'yes' if figures.caught_up else 'NO'}; "
        f"`crm projections verify`: "
        + ", ".join(f"{n} {'clean' if ok else 'DIFFERS'}" for n, ok in figures.verified.items())
        + "; records rejected: "
        + ", ".join(f"{n} {count}" for n, count in figures.rejected.items()),
        f"* processes: {'all running' if not figures.exits else '; '.join(figures.exits)}; "
        f"restarted only after the soak's own SIGKILLs; writer processes started again "
        f"by their consumer: {figures.writer_restarts}",
    ]
    lines += [f"  * refused: {refusal}" for refusal in tally.rejected[:5]]
    lines += [f"* FAILURE: {failure}" for failure in figures.failures]
    return "\n".join(lines) + "\n"
