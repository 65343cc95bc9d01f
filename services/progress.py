"""A rich progress bar with rate and ETA for long replays (`crm projections rebuild`)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    Task,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.text import Text


class RateColumn(ProgressColumn):
    """Events a second over the whole run so far. Rich's own `task.speed` is taken over
    the last few advances only: work that advances in large steps a few milliseconds
    apart showed millions of events a second (red team, `crm projections verify`)."""

    def render(self, task: Task) -> Text:
        elapsed = task.elapsed
        if not elapsed or not task.completed:
            return Text("- ev/s")
        return Text(f"{task.completed / elapsed:,.0f} ev/s")


@contextmanager
def progress_bar(title: str, total: int | None = None) -> Iterator[Callable[[int], None]]:
    """Yields `advance(count)`; the total may be unknown (then no ETA, just the rate)."""
    columns = (
        TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
        RateColumn(), TimeElapsedColumn(), TimeRemainingColumn(),
    )  # fmt: skip
    with Progress(*columns, transient=False) as progress:
        task = progress.add_task(title, total=total)
        yield lambda count: progress.advance(task, count)
