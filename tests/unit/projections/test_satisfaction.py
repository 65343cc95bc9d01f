"""CSAT and NPS against figures computed by hand, with a hand-off after the interaction."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

from domain.conversation import ConversationHandedOff, RecommendationScored, SatisfactionRated
from projections import PROJECTIONS
from projections.satisfaction import ALL, ALL_TIME, bucket, bucket_range, csat, nps, nps_category
from tests.unit.projections.memory import replay

CUSTOMER = uuid.uuid4()
DAY1 = datetime(2024, 3, 4, 10, tzinfo=UTC)  # Monday of ISO week 10
DAY2 = datetime(2024, 3, 11, 9, tzinfo=UTC)  # Monday of ISO week 11


def meta(conversation: uuid.UUID, version: int, at: datetime) -> dict[str, Any]:
    return {
        "originator_id": conversation, "originator_version": version, "occurred_at": at,
        "actor": "x", "actor_department": "support", "correlation_id": "c",
        "customer_id": CUSTOMER,
    }  # fmt: skip


def scenario() -> list[Any]:
    """ann (support) gets CSAT 5, 4, 2 and NPS 10, 9, 6, 8; bob (sales) CSAT 3 and NPS 0.

    ann's first conversation is handed off to bob AFTER its survey: the credit stays
    with ann, the agent carried in the survey event.
    """
    c1, c2, c3 = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    ann: dict[str, Any] = {"agent": "ann", "department": "support"}
    bob: dict[str, Any] = {"agent": "bob", "department": "sales"}
    return [
        SatisfactionRated(**meta(c1, 5, DAY1), score=5, **ann),
        RecommendationScored(**meta(c1, 6, DAY1), score=10, **ann),
        ConversationHandedOff(
            **meta(c1, 7, DAY2),
            from_department="support",
            from_agent="ann",
            to_department="sales",
            to_agent="bob",
        ),
        SatisfactionRated(**meta(c2, 5, DAY1), score=4, **ann),
        RecommendationScored(**meta(c2, 6, DAY1), score=9, **ann),
        SatisfactionRated(**meta(c3, 5, DAY2), score=2, **ann),
        RecommendationScored(**meta(c3, 6, DAY2), score=6, **ann),
        RecommendationScored(**meta(c3, 7, DAY2), score=8, **ann),
        SatisfactionRated(**meta(uuid.uuid4(), 5, DAY2), score=3, **bob),
        RecommendationScored(**meta(uuid.uuid4(), 5, DAY2), score=0, **bob),
    ]


def row(department: str, agent: str, granularity: str, label: str) -> dict[str, Any]:
    session = replay(PROJECTIONS["stats"], scenario())
    return session.tables["satisfaction"][(department, agent, granularity, label)]


def test_formulas() -> None:
    assert csat(3, 2) == 66.67
    assert nps(4, 2, 1) == 25.0
    assert csat(0, 0) is None
    assert [nps_category(s) for s in (0, 6, 7, 8, 9, 10)] == [
        "detractor", "detractor", "passive", "passive", "promoter", "promoter",
    ]  # fmt: skip


def test_agent_keeps_credit_after_hand_off() -> None:
    ann = row("support", "ann", "all", ALL_TIME)
    assert (ann["csat_answers"], ann["csat_positive"]) == (3, 2)
    assert (ann["nps_answers"], ann["promoters"], ann["passives"], ann["detractors"]) == (
        4,
        2,
        1,
        1,
    )
    assert csat(ann["csat_answers"], ann["csat_positive"]) == 66.67
    assert nps(ann["nps_answers"], ann["promoters"], ann["detractors"]) == 25.0
    bob = row("sales", "bob", "all", ALL_TIME)
    assert (bob["csat_answers"], bob["csat_positive"], bob["detractors"]) == (1, 0, 1)


def test_totals_and_buckets() -> None:
    everyone = row(ALL, ALL, "all", ALL_TIME)
    assert csat(everyone["csat_answers"], everyone["csat_positive"]) == 50.0  # 2 of 4
    assert nps(everyone["nps_answers"], everyone["promoters"], everyone["detractors"]) == 0.0
    assert bucket(DAY1, "week") == "2024-W10"
    week10 = row("support", ALL, "week", "2024-W10")
    assert (week10["csat_answers"], week10["csat_positive"]) == (2, 2)
    day2 = row(ALL, "ann", "day", "2024-03-11")
    assert (day2["nps_answers"], day2["detractors"], day2["passives"]) == (2, 1, 1)
    assert row("support", ALL, "month", "2024-03")["csat_answers"] == 3


def test_a_range_takes_the_utc_buckets_it_touches_and_the_calendar_ends_bound_nothing() -> None:
    east, west = timezone(timedelta(hours=14)), timezone(timedelta(hours=-14))
    start = datetime(2024, 4, 1, 0, 30, tzinfo=east)  # 2024-03-31T10:30Z
    end = datetime(2024, 3, 31, 23, 30, tzinfo=west)  # 2024-04-01T13:30Z
    assert bucket_range(start, end, "day") == ("2024-03-31", "2024-04-01")
    assert bucket_range(start, end, "week") == ("2024-W13", "2024-W14")
    assert bucket_range(start, end, "month") == ("2024-03", "2024-04")
    after = datetime(9999, 12, 31, 23, 59, 59, tzinfo=timezone(-timedelta(hours=23, minutes=59)))
    before = datetime(1, 1, 1, tzinfo=east)
    assert bucket_range(before, after, "day") == (None, None)
    assert bucket_range(after, None, "day") is None
    assert bucket_range(None, before, "month") is None
