"""The progress bar's rate is events a second over the whole run, not over its last
advances (which showed millions of events a second for work advancing in large steps)."""

from __future__ import annotations

from rich.progress import Progress

from services.progress import RateColumn


def test_the_rate_is_taken_over_the_whole_run() -> None:
    now = [0.0]
    progress = Progress(RateColumn(), get_time=lambda: now[0], disable=True)
    task_id = progress.add_task("verifying", total=None)
    assert RateColumn().render(progress.tasks[0]).plain == "- ev/s"
    now[0] = 3.999
    progress.advance(task_id, 1_000)
    now[0] = 4.0  # a large step a millisecond after the last
    progress.advance(task_id, 1_000)
    task = progress.tasks[0]
    assert (task.speed or 0) > 100_000  # rich's own: over the last steps
    assert RateColumn().render(task).plain == "500 ev/s"
