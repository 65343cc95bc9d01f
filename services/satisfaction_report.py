"""`crm stats satisfaction`: CSAT and NPS per period, computed from the event store.

Reads the survey answers straight from the notification log, so it is always exact
and needs no live read model. It counts them with the `stats` projection itself, into
a read model in memory, and asks that what the API asks its own
(`ReadModels.satisfaction`): one formula, one bucketing (UTC), one range rule, so
`crm stats satisfaction` answers exactly what `GET /v1/stats/satisfaction` answers.
Answers are credited to the department/agent recorded on the event (as of the
interaction). I/O: reads the event store.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from typing import Any, cast

from consumers.batch_commit import commit
from consumers.projecting import Item
from consumers.readmodel_store import STORE_TOPIC
from consumers.store_sqlite import SqliteStore
from domain.base import DomainEvent
from domain.conversation import RecommendationScored, SatisfactionRated
from projections import PROJECTIONS
from services.api.read_models import ReadModels
from services.event_store import CrmApplication

PAGE = 1000
SURVEYS = frozenset(cls.wire_name() for cls in (SatisfactionRated, RecommendationScored))


def satisfaction_report(
    app: CrmApplication,
    *,
    department: str | None,
    agent: str | None,
    start: datetime | None,
    end: datetime | None,
    granularity: str,
) -> dict[str, Any]:
    """What `GET /v1/stats/satisfaction` answers for the same filters: periods and total."""
    store = SqliteStore(":memory:")
    try:
        stats = PROJECTIONS["stats"]
        generation = store.install(stats)
        for items in _survey_items(app):
            commit(store, stats, generation, items, in_order=False)  # the surveys alone
        return ReadModels(store).satisfaction(
            department=department, agent=agent, start=start, end=end, granularity=granularity
        )
    finally:
        store.close()


def _survey_items(app: CrmApplication) -> Iterator[list[Item]]:
    """The survey answers of the notification log, a page at a time."""
    position = 1
    while notifications := app.notification_log.select(position, PAGE):
        yield [
            Item(STORE_TOPIC, 0, n.id, n.id, b"", cast(DomainEvent, app.mapper.to_domain_event(n)))
            for n in notifications
            if n.topic.partition("@")[0] in SURVEYS
        ]
        position = notifications[-1].id + 1


def print_report(answer: dict[str, Any]) -> None:
    """The periods and the total as a table on the terminal."""
    from rich.console import Console
    from rich.table import Table

    table = Table("period", "CSAT %", "CSAT answers", "NPS", "NPS answers")
    for row in [*answer["periods"], answer["total"] | {"bucket": "total"}]:
        table.add_row(
            row["bucket"],
            _score(row["csat"]),
            str(row["csat_answers"]),
            _score(row["nps"]),
            str(row["nps_answers"]),
        )
    Console().print(table)


def _score(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"
