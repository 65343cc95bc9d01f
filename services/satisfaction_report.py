"""`crm stats satisfaction`: CSAT and NPS per period, computed from the event store.

Reads the survey events straight from the notification log, so it is always exact
and needs no read model (the `stats` projection serves the same numbers to the API).
CSAT = answers of 4-5 / all answers x 100; NPS = % of 9-10 minus % of 0-6.
Answers are credited to the department/agent recorded on the event (as of the
interaction). I/O: reads the event store.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime

from domain.conversation import RecommendationScored, SatisfactionRated
from services.event_store import CrmApplication

PAGE = 1000


@dataclass
class Bucket:
    csat: list[int] = field(default_factory=list)
    nps: list[int] = field(default_factory=list)

    def csat_score(self) -> float | None:
        return None if not self.csat else 100 * sum(s >= 4 for s in self.csat) / len(self.csat)

    def nps_score(self) -> float | None:
        if not self.nps:
            return None
        promoters = sum(s >= 9 for s in self.nps)
        detractors = sum(s <= 6 for s in self.nps)
        return 100 * (promoters - detractors) / len(self.nps)


@dataclass
class Report:
    buckets: dict[str, Bucket]

    def print(self) -> None:
        from rich.console import Console
        from rich.table import Table

        table = Table("period", "CSAT %", "CSAT answers", "NPS", "NPS answers")
        for period, bucket in sorted(self.buckets.items()):
            csat, nps = bucket.csat_score(), bucket.nps_score()
            table.add_row(
                period,
                "-" if csat is None else f"{csat:.1f}",
                str(len(bucket.csat)),
                "-" if nps is None else f"{nps:.1f}",
                str(len(bucket.nps)),
            )
        Console().print(table)


def period_of(instant: datetime, granularity: str) -> str:
    if granularity == "month":
        return instant.strftime("%Y-%m")
    if granularity == "week":
        year, week, _ = instant.isocalendar()
        return f"{year}-W{week:02d}"
    return instant.strftime("%Y-%m-%d")


def satisfaction_report(
    app: CrmApplication,
    *,
    department: str | None,
    agent: str | None,
    start: datetime | None,
    end: datetime | None,
    granularity: str,
) -> Report:
    buckets: dict[str, Bucket] = defaultdict(Bucket)
    for event in _survey_events(app):
        if department is not None and event.department != department:
            continue
        if agent is not None and event.agent != agent:
            continue
        if (start and event.occurred_at < start) or (end and event.occurred_at >= end):
            continue
        bucket = buckets[period_of(event.occurred_at, granularity)]
        (bucket.csat if isinstance(event, SatisfactionRated) else bucket.nps).append(event.score)
    return Report(dict(buckets))


def _survey_events(app: CrmApplication) -> list[SatisfactionRated | RecommendationScored]:
    found: list[SatisfactionRated | RecommendationScored] = []
    position = 1
    wanted = (SatisfactionRated.wire_name(), RecommendationScored.wire_name())
    while notifications := app.notification_log.select(position, PAGE):
        for notification in notifications:
            if notification.topic.partition("@")[0] in wanted:
                event = app.mapper.to_domain_event(notification)
                assert isinstance(event, SatisfactionRated | RecommendationScored)
                found.append(event)
        position = notifications[-1].id + 1
    return found
