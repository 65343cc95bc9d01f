"""One satisfaction formula and one period bucketing (UTC) for `crm stats satisfaction`
and `GET /v1/stats/satisfaction`: both answer the same for every granularity, with
answers around midnight, week and month boundaries in -14 h and +14 h offsets, and a
range bound beyond the calendar (year 10000 in UTC) is an answer, not a 500."""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from typing import Any
from uuid import uuid4

import pytest
from litestar.testing import TestClient

from consumers.stats_queries import satisfaction_stats
from domain.base import Context
from domain.conversation import Conversation
from domain.customer import Customer
from tests.e2e.processes import CRM
from tests.integration.api_support import EmbeddedApi, embedded_api

EAST, WEST = timezone(timedelta(hours=14)), timezone(timedelta(hours=-14))
LAST = "9999-12-31T23:59:59-23:59"
FIRST = "0001-01-01T00:00:00+14:00"
ANSWERS = [  # (local time of the answer, CSAT, NPS); UTC day and month in the comment
    (datetime(2024, 3, 31, 23, 30, tzinfo=WEST), 5, 10),  # 2024-04-01 13:30Z, W14, April
    (datetime(2024, 4, 1, 0, 30, tzinfo=EAST), 2, 3),  # 2024-03-31 10:30Z, W13, March
    (datetime(2024, 3, 31, 9, 59, tzinfo=EAST), 4, 6),  # 2024-03-30 19:59Z, W13, March
    (datetime(2024, 4, 7, 23, 59, tzinfo=WEST), 3, 7),  # 2024-04-08 13:59Z, W15, April
    (datetime(2024, 12, 31, 20, 0, tzinfo=WEST), 1, 0),  # 2025-01-01 10:00Z, 2025-W01
]


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[EmbeddedApi, TestClient[Any]]]:
    with (
        embedded_api(tmp_path_factory.mktemp("satisfaction")) as embedded,
        TestClient(app=embedded.app) as client,
    ):
        record_answers(embedded)
        embedded.catch_up()
        yield embedded, client


def record_answers(api: EmbeddedApi) -> None:
    """Survey answers at chosen instants, through the domain (HTTP takes the server's
    clock), each on its own conversation of support agent ann."""
    for at, score, recommendation in ANSWERS:
        ctx = Context(actor="ann", actor_department="support", occurred_at=at, correlation_id="c")
        customer = Customer.register(
            ctx, customer_id=uuid4(), name="Ada", owner_department="support"
        )
        talk = Conversation.open(
            ctx, conversation_id=uuid4(), customer=customer, channel="email", subject="s",
            agent="ann",
        )  # fmt: skip
        talk.close(ctx, outcome="resolved")
        talk.rate_satisfaction(ctx, score=score)
        talk.score_recommendation(ctx, score=recommendation)
        api.runtime.app.record(customer, talk)


RANGES = [
    {},
    {"from": "2024-03-31T12:00:00+14:00", "to": "2024-04-07T23:00:00-14:00"},
    {"from": "2024-04-01T00:00:00-14:00"},
    {"to": "2024-03-31T23:59:59+14:00"},
    {"to": LAST},
    {"from": FIRST, "to": LAST},
    {"from": LAST},
]


@pytest.mark.parametrize("granularity", ["day", "week", "month"])
@pytest.mark.parametrize("bounds", RANGES, ids=lambda b: ",".join(f"{k}={v}" for k, v in b.items()))
def test_the_cli_answers_what_the_api_answers(
    api: tuple[EmbeddedApi, TestClient[Any]], granularity: str, bounds: dict[str, str]
) -> None:
    embedded, client = api
    for role in ("analyst", "manager"):
        headers = embedded.token(f"{role}-{uuid4().hex[:6]}", "support", role)
        params = {"granularity": granularity, "department": "support"} | bounds
        response = client.get("/v1/stats/satisfaction", params=params, headers=headers)
        assert response.status_code == 200, response.text
        assert cli(embedded, params) == response.json()


def cli(api: EmbeddedApi, params: dict[str, str]) -> Any:
    options = [f"--{name}={value}" for name, value in params.items()]
    env = {**os.environ, "CRM_DATA_DIR": str(api.runtime.settings.data_dir), "CRM_DATABASE_URL": ""}
    done = subprocess.run(
        [CRM, "stats", "satisfaction", "--json", *options],
        env=env, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def test_answers_are_bucketed_by_their_utc_instant(
    api: tuple[EmbeddedApi, TestClient[Any]],
) -> None:
    embedded, client = api
    headers = embedded.token("ana", "support", "analyst")
    answer = client.get(
        "/v1/stats/satisfaction",
        params={"granularity": "month", "department": "support"},
        headers=headers,
    ).json()
    months = {p["bucket"]: (p["csat_answers"], p["csat"]) for p in answer["periods"]}
    assert months == {"2024-03": (2, 50.0), "2024-04": (2, 50.0), "2025-01": (1, 0.0)}
    assert (answer["total"]["nps_answers"], answer["total"]["nps"]) == (5, -40.0)


@pytest.mark.parametrize("bound", ["from", "to"])
@pytest.mark.parametrize("instant", [LAST, FIRST])
def test_a_bound_beyond_the_utc_calendar_is_an_answer(
    api: tuple[EmbeddedApi, TestClient[Any]], bound: str, instant: str
) -> None:
    """Year 10000 (or year 0) in UTC: after (before) every answer, never a 500."""
    embedded, client = api
    for role in ("analyst", "manager"):
        headers = embedded.token(f"{role}-{uuid4().hex[:6]}", "support", role)
        params = {bound: instant, "department": "support"}
        response = client.get("/v1/stats/satisfaction", params=params, headers=headers)
        assert response.status_code == 200, response.text
        everything = (bound == "to") == (instant == LAST)
        assert response.json()["total"]["csat_answers"] == (len(ANSWERS) if everything else 0)


@pytest.mark.parametrize("granularity", ["day", "week", "month"])
def test_the_total_without_a_range_is_the_stored_all_time_row(
    api: tuple[EmbeddedApi, TestClient[Any]], granularity: str
) -> None:
    """Without a range the total is summed from the periods, not read from the all-time
    row: both must be the same counters and scores."""
    embedded, client = api
    headers = embedded.token(f"ana-{granularity}", "support", "analyst")
    for scope in ({"department": "support"}, {"department": "support", "agent": "ann"}, {}):
        params = {"granularity": granularity} | scope
        answer = client.get("/v1/stats/satisfaction", params=params, headers=headers).json()
        stored = satisfaction_stats(
            embedded.store, department=scope.get("department"), agent=scope.get("agent"),
            granularity="all",
        )  # fmt: skip
        assert stored, scope  # the all-time row exists: answers were recorded
        assert answer["total"] == stored[0]
        assert answer["total"]["nps_answers"] == len(ANSWERS)


@pytest.mark.parametrize("bounded", [False, True])
def test_a_total_without_answers_has_the_shape_of_a_stored_total(
    api: tuple[EmbeddedApi, TestClient[Any]], bounded: bool
) -> None:
    """An agent who was never rated: zero counters and no scores, under the same keys as
    a total that counted answers (department, agent, granularity and bucket included)."""
    embedded, client = api
    headers = embedded.token(f"ana-empty-{bounded}", "support", "analyst")
    params = {"department": "support", "granularity": "month"}
    if bounded:
        params |= {"from": "2024-01-01T00:00:00Z", "to": "2026-01-01T00:00:00Z"}
    rated = client.get("/v1/stats/satisfaction", params=params, headers=headers).json()
    unrated = client.get(
        "/v1/stats/satisfaction", params=params | {"agent": "nobody"}, headers=headers
    ).json()
    assert rated["total"]["csat_answers"] > 0
    assert (unrated["periods"], unrated["total"].keys()) == ([], rated["total"].keys())
    assert unrated["total"] == rated["total"] | {
        "agent": "nobody", "csat_answers": 0, "csat_positive": 0, "nps_answers": 0,
        "promoters": 0, "passives": 0, "detractors": 0, "csat": None, "nps": None,
    }  # fmt: skip
