"""`/metrics` takes no token, and rendering it asks the stores the gauges' questions
(~15 times what `/healthz` costs, red team): a rendering is answered again for
`EXPOSITION_SECONDS`, and then made anew."""

from __future__ import annotations

from services.api.observability import EXPOSITION_SECONDS, Metrics


def test_a_rendering_is_answered_again_within_its_second_then_made_anew() -> None:
    asked: list[int] = []
    now = [100.0]

    def head() -> float:
        asked.append(1)
        return float(len(asked))

    metrics = Metrics(head, clock=lambda: now[0])
    first = metrics.exposition()
    assert b"crm_event_store_head_position 1.0" in first
    now[0] += EXPOSITION_SECONDS / 2
    assert metrics.exposition() is first
    assert len(asked) == 1  # the store was asked once
    now[0] += EXPOSITION_SECONDS
    assert b"crm_event_store_head_position 2.0" in metrics.exposition()
    assert len(asked) == 2
