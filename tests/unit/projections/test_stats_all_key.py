"""The "all" rows of the statistics: an agent or assignee named `*` is counted once, as
itself, and its name selects its own row, never everyone's."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

from domain import fields, validation
from domain.conversation import SatisfactionRated
from domain.task import TaskCreated
from projections import PROJECTIONS
from projections.satisfaction import ALL, ALL_TIME, csat
from tests.unit.projections.memory import replay

AT = datetime(2024, 3, 4, 10, tzinfo=UTC)


def meta() -> dict[str, Any]:
    return {
        "originator_id": uuid.uuid4(), "originator_version": 1, "occurred_at": AT,
        "actor": "x", "actor_department": "support", "correlation_id": "c",
        "customer_id": uuid.uuid4(),
    }  # fmt: skip


def test_an_agent_named_star_is_counted_once_and_as_itself() -> None:
    events = [
        SatisfactionRated(**meta(), score=5, department="support", agent="*"),
        SatisfactionRated(**meta(), score=1, department="support", agent="alice"),
    ]
    rows = replay(PROJECTIONS["stats"], events).tables["satisfaction"]
    everyone = rows[("support", ALL, "all", ALL_TIME)]
    assert (everyone["csat_answers"], everyone["csat_positive"]) == (2, 1)
    assert csat(everyone["csat_answers"], everyone["csat_positive"]) == 50.0
    assert rows[("support", "*", "all", ALL_TIME)]["csat_answers"] == 1
    assert rows[(ALL, ALL, "all", ALL_TIME)]["csat_answers"] == 2


def test_an_assignee_named_star_is_counted_once_and_as_itself() -> None:
    events = [
        TaskCreated(**meta(), title="t", department="marketing", assignee=name)
        for name in ("*", "bob", None)
    ]
    rows = replay(PROJECTIONS["stats"], events).tables["tasks"]
    assert rows[("marketing", ALL)]["created"] == 3
    assert rows[(ALL, ALL)]["created"] == 3
    assert [rows[("marketing", n)]["created"] for n in ("*", "bob", "")] == [1, 1, 1]


def test_no_name_can_be_the_all_key() -> None:
    """Every name goes through `domain.validation`, which strips it."""
    assert validation.optional_text(ALL, "agent", fields.PERSON) != ALL
    assert validation.text(ALL, "assignee", fields.PERSON) != ALL
