"""`?min_position=N` (read your writes) waits on the event loop: a position beyond the
store's head is refused at once, and many waiters hold no thread and slow nobody.
Embedded mode, a real uvicorn; the projections move only when the test says so."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.e2e.processes import eventually
from tests.integration.api_support import EmbeddedApi, embedded_api, served

WAITERS = 120


@pytest.fixture
def api(tmp_path: Path) -> Iterator[EmbeddedApi]:
    with embedded_api(tmp_path, read_wait="30") as embedded:
        yield embedded


@pytest.fixture
def base(api: EmbeddedApi) -> Iterator[str]:
    with served(api.app) as url:
        yield url


def test_positions_beyond_the_head_are_refused_at_once(api: EmbeddedApi, base: str) -> None:
    sales = api.token("sam", "sales", "agent")

    async def ask() -> list[int]:
        async with httpx.AsyncClient(base_url=base, timeout=10) as client:
            url = "/v1/departments/sales/customers?min_position=999999999"
            answers = await asyncio.gather(
                *(client.get(url, headers=sales) for _ in range(WAITERS))
            )
        return [answer.status_code for answer in answers]

    assert set(asyncio.run(ask())) == {400}


def test_many_waiters_hold_no_thread_and_do_not_slow_other_requests(
    api: EmbeddedApi, base: str
) -> None:
    """120 readers wait for a write the projections have not applied yet (more than the
    server's worker threads); an unrelated read is answered while every one of them
    still waits, and they all get their answer once the projections move."""
    sales = api.token("sam", "sales", "agent")
    positions = api.app.state.services.positions

    async def scenario() -> tuple[int, list[int], bool]:
        limits = httpx.Limits(max_connections=WAITERS + 10)
        async with httpx.AsyncClient(base_url=base, timeout=60, limits=limits) as client:
            written = await client.post("/v1/customers", json={"name": "Ada"}, headers=sales)
            position = written.json()["position"]
            url = f"/v1/departments/sales/customers?min_position={position}"
            waiting = [asyncio.create_task(client.get(url, headers=sales)) for _ in range(WAITERS)]
            await asyncio.to_thread(eventually, lambda: positions.waiting() == WAITERS or None)
            other = await client.get(f"/v1/customers/{written.json()['id']}", headers=sales)
            still_waiting = not any(task.done() for task in waiting)
            await asyncio.to_thread(api.catch_up)
            positions.poke()
            answers = await asyncio.gather(*waiting)
        return other.status_code, [a.status_code for a in answers], still_waiting

    other, answers, still_waiting = asyncio.run(scenario())
    assert other == 200
    assert still_waiting, "a waiter returned before the projections applied its position"
    assert set(answers) == {200}
